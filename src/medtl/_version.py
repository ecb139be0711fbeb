"""The version of medtl (the package metadata reads it from pyproject.toml)."""

__version__ = "0.1.0"
