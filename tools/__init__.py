"""Repository tooling: duplicate scanner, repo checker, type-check runner."""
