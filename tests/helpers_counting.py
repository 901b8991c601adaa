"""A plugin host that counts how often a dataset is read, through the plugin API."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any


class CountingLoadsHost:
    """``host`` as it is, except that its dataset loaders count the calls to ``load``
    (each preparation of the data reads the dataset once). Safe from any thread."""

    def __init__(self, host: Any) -> None:
        self._host = host
        self._lock = threading.Lock()
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def dataset_loaders(self):
        return {
            id_: dataclasses.replace(loader, load=self._counted(loader.load))
            for id_, loader in self._host.dataset_loaders().items()
        }

    def _counted(self, load):
        def counted_load(path, options):
            with self._lock:
                self.loads += 1
            return load(path, options)

        return counted_load
