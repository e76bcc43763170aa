"""The package version, in a module of its own so the server can read it without importing
the client (promptserve/__init__.py imports the whole SDK)."""

__version__ = "0.1.0"
