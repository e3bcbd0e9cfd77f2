"""Generators for the documentation site: pages whose facts come from a file in the repository."""
