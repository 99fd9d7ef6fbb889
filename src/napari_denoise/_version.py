"""The package's version: a leaf module that imports nothing, so any module can read it
without importing the package ``__init__`` (the public API on top of everything)."""

__version__ = "0.1.0"
