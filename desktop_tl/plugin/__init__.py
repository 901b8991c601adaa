"""The desktop_tl plugin SDK: everything a plugin package imports, and nothing else.

A plugin is a module registered under the ``desktop_tl`` entry-point group that declares
``DTL_API_VERSION`` and implements hooks marked with :data:`hookimpl`. It imports only
from this package (and :mod:`desktop_tl.errors`); the engine behind it may change between
releases, this API changes only with :data:`API_VERSION`. An import contract in CI keeps
the shipped plugins to it, and ``desktop-tl plugin new NAME`` starts a package that does.

Modules for plugin authors:

- :mod:`desktop_tl.plugin.hookspecs`: the hooks, each with its arguments, what it
  returns, on which thread it runs, and a runnable example. :data:`hookimpl` marks an
  implementation.
- :mod:`desktop_tl.plugin.descriptors`: what hooks return. Backbones:
  :class:`BackboneProvider`, :class:`Backbone`, :class:`Preprocessing`,
  :class:`WeightsSource`, :class:`WeightsLocation`. Datasets: :class:`DatasetLoader`,
  :class:`LoadedDataset`, :class:`Sample`. Heads: :class:`HeadType`, :class:`HeadOption`.
  Descriptors check themselves when built and raise :class:`DescriptorError` naming the
  plugin.
- :mod:`desktop_tl.plugin.weights`: :class:`PretrainedWeights`, what a provider's
  ``build`` receives: weights the host found, checked (sha256) and read safely, loaded
  into the network with ``weights.load_into(network)`` (every key and shape checked).
  A provider declares where weights may be and never reads a weights file itself.
- :mod:`desktop_tl.plugin.staging`: :func:`sequential`, :func:`final_linear`,
  :func:`drop_aux_classifiers`, for staging a network into named blocks.
- :mod:`desktop_tl.plugin.images`: :data:`IMAGE_EXTENSIONS`, the files read as images.
- Errors a plugin raises so that the person sees a message rather than a traceback:
  :class:`UserError` (anything the user can fix), :class:`DatasetError`,
  :class:`WeightsFileError`, :class:`WeightsUnavailableError`.

The host side (:mod:`desktop_tl.plugin.manager`: :class:`PluginHost`, :func:`get_host`
and the lookup errors) is for the application and for tests that load a plugin through
the real host.
"""

from ..errors import UserError
from .descriptors import (
    API_VERSION,
    INTERPOLATIONS,
    Backbone,
    BackboneProvider,
    DatasetError,
    DatasetLoader,
    DescriptorError,
    HeadOption,
    HeadType,
    LoadedDataset,
    Preprocessing,
    Sample,
    WeightsFileError,
    WeightsLocation,
    WeightsProvenance,
    WeightsSource,
    WeightsStatus,
    WeightsUnavailableError,
)
from .hookspecs import hookimpl, hookspec
from .images import IMAGE_EXTENSIONS, is_image_file_name
from .manager import (
    AmbiguousBackboneError,
    BackboneNotFoundError,
    HeadNotFoundError,
    LoaderNotFoundError,
    PathNotLoadableError,
    PluginError,
    PluginHost,
    PluginLookupError,
    PluginRecord,
    get_host,
)
from .staging import drop_aux_classifiers, final_linear, sequential
from .weights import PretrainedWeights, file_name_from_url, weights_dir

__all__ = [
    "API_VERSION",
    "AmbiguousBackboneError",
    "Backbone",
    "BackboneNotFoundError",
    "BackboneProvider",
    "DatasetError",
    "DatasetLoader",
    "DescriptorError",
    "HeadNotFoundError",
    "HeadOption",
    "HeadType",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "LoadedDataset",
    "LoaderNotFoundError",
    "PathNotLoadableError",
    "PluginError",
    "PluginHost",
    "PluginLookupError",
    "PluginRecord",
    "Preprocessing",
    "PretrainedWeights",
    "Sample",
    "UserError",
    "WeightsFileError",
    "WeightsLocation",
    "WeightsProvenance",
    "WeightsSource",
    "WeightsStatus",
    "WeightsUnavailableError",
    "drop_aux_classifiers",
    "file_name_from_url",
    "final_linear",
    "get_host",
    "hookimpl",
    "hookspec",
    "is_image_file_name",
    "sequential",
    "weights_dir",
]
