"""promptserve: serve prompt-adapted foundation models. This module is the typed client SDK."""

__version__ = "0.1.0"
