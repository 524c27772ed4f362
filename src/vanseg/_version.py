"""The package version (pyproject.toml's ``version``), importable without the rest of vanseg."""

__version__ = "0.1.0"
