"""Repository checker: ``python -m tools.repocheck`` (see tools/README.md)."""
