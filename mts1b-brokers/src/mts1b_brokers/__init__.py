"""mts1b-brokers."""
__all__: list[str] = []
