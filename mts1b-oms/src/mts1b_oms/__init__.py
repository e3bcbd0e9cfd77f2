"""mts1b-oms."""
