"""The plugin API: hook specifications, descriptor types and the plugin manager."""

from .descriptors import API_VERSION
from .hookspecs import hookimpl, hookspec
from .manager import (
    AmbiguousBackboneError,
    BackboneNotFoundError,
    HeadNotFoundError,
    LoaderNotFoundError,
    PluginError,
    PluginHost,
    PluginLookupError,
    PluginRecord,
    get_host,
)

__all__ = [
    "API_VERSION",
    "AmbiguousBackboneError",
    "BackboneNotFoundError",
    "HeadNotFoundError",
    "LoaderNotFoundError",
    "PluginError",
    "PluginHost",
    "PluginLookupError",
    "PluginRecord",
    "get_host",
    "hookimpl",
    "hookspec",
]
