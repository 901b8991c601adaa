"""Dataset loaders shipped with desktop_tl: image folders and CSV/TSV manifests.

Registered under the ``desktop_tl`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from desktop_tl.plugin import DatasetLoader, hookimpl

from .csv_manifest import MANIFEST_SUFFIXES, can_load_manifest, load_manifest
from .image_folder import can_load_folder, load_folder

DTL_API_VERSION = "1.0"

IMAGE_FOLDER = DatasetLoader(
    id="image-folder",
    display_name="Image folder (one subfolder per class)",
    can_load=can_load_folder,
    load=load_folder,
    description=(
        "A folder with one subfolder of images per class. When it holds train/, val/ "
        "(and optionally test/) folders, each laid out the same way, that split is used "
        "as given."
    ),
    path_kind="folder",
    # The usual layout, so asked before other folder loaders (which could accept any
    # folder); a loader for a more specific layout declares a higher priority.
    priority=10,
)

CSV_MANIFEST = DatasetLoader(
    id="csv-manifest",
    display_name="CSV/TSV manifest (path,label[,split])",
    can_load=can_load_manifest,
    load=load_manifest,
    description=(
        "A .csv or .tsv file whose header row names the columns path and label, and "
        "optionally split (train, val or test). Relative paths are read from the "
        "manifest's folder."
    ),
    path_kind="file",
    file_patterns=tuple(f"*{suffix}" for suffix in MANIFEST_SUFFIXES),
)


@hookimpl
def dtl_dataset_loaders():
    return [IMAGE_FOLDER, CSV_MANIFEST]
