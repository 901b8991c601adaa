"""The plugin API: hook specifications, descriptor types and the plugin manager."""

from .descriptors import API_VERSION
from .hookspecs import hookimpl, hookspec

__all__ = ["API_VERSION", "hookimpl", "hookspec"]
