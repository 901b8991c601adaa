"""Features of the frozen part of the model, computed once per image.

With a frozen prefix of the backbone and no random augmentation, the prefix's output for
an image never changes, so running it every epoch (as the plain recipe does) is wasted
work. A :class:`FeatureStore` holds those outputs for one list of images; with
augmentation, it holds a fixed number of augmented views of each image
(:mod:`desktop_tl.core.augmented_views`).

Memory stays bounded: rows are kept in memory (fp16, or bf16 where they were computed in
bf16) while a shared :class:`MemoryBudget` allows, and the rest are read from a file in
the cache directory. Every store is named by a key (:func:`feature_key`): a SHA-256 over
the backbone, its weights file's hash, the frozen prefix's actual parameters, the
preprocessing, the chain stage, the precision and every image's path, label, size and
modification time. A changed image, weights file or preprocessing therefore never meets
stale features.

Reuse across runs: a completed store is also written to ``<cache dir>/features/<key>.dtlf``
(into a temporary file first, renamed into place when complete, so an interrupted write
never leaves an entry), and a later run with the same key reads it instead of running the
backbone. Clean-up keeps the most recently used entries up to :func:`disk_limit_bytes`
(2 GiB unless ``DTL_FEATURE_CACHE_KEEP_MB`` says otherwise) and deletes temporary files
that crashed writers left behind a day ago or earlier. ``DTL_FEATURE_CACHE_REUSE=0``
turns reuse off (features then touch the disk only when they exceed the memory budget,
in an anonymous temporary file).

Entry file layout: the rows (C order, native little-endian), then a JSON trailer, then
the trailer's length (8 bytes, little-endian) and the magic ``DTLFEAT1``. The writer, the
reader and the key of that format stay in this one module (hence its length), so the
three cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import torch

from .cancelled import Cancelled

ENTRY_SUFFIX = ".dtlf"
MAGIC = b"DTLFEAT1"
KEY_FORMAT = "desktop_tl.features/1"
DEFAULT_KEEP_MB = 2048
STALE_TEMP_SECONDS = 24 * 3600
_TRAILER = struct.Struct("<Q8s")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


# --------------------------------------------------------------------------- settings


def features_dir() -> Path:
    """Where feature entries live: ``features/`` in the run-independent cache directory."""
    from .run_folder import cache_dir

    return cache_dir() / "features"


def reuse_enabled() -> bool:
    """Whether completed stores are kept on disk for later runs (``DTL_FEATURE_CACHE_REUSE``)."""
    from ..env import env_flag

    return env_flag("DTL_FEATURE_CACHE_REUSE", default=True)


def disk_limit_bytes() -> int:
    """How much the kept entries may take on disk (the newest are kept)."""
    raw = os.environ.get("DTL_FEATURE_CACHE_KEEP_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_KEEP_MB
    except ValueError:
        mb = DEFAULT_KEEP_MB
    return max(0, int(mb * 2**20))


class MemoryBudget:
    """Bytes the caches of one run may hold in memory, shared by all of them."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, int(limit_bytes))
        self.used = 0
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        return max(0, self.limit - self.used)

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` if they fit (all or nothing)."""
        with self._lock:
            if self.used + nbytes > self.limit:
                return False
            self.used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used = max(0, self.used - nbytes)


# --------------------------------------------------------------------------- keys


def file_signature(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file; (-1, -1) if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def state_digest(modules: Iterable[torch.nn.Module]) -> str:
    """SHA-256 over the parameters and buffers of ``modules``: what the frozen prefix
    actually computes with (a resumed or re-frozen run may differ from the weights file)."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{index}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def feature_key(context: dict[str, Any], items: Sequence[tuple[str, int]]) -> str:
    """The key of the features of ``items`` under ``context`` (backbone, weights,
    preprocessing, chain stage, precision...); each image adds path, label, size and
    modification time."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": KEY_FORMAT, **context}, sort_keys=True, default=str).encode())
    for path, label in items:
        size, mtime = file_signature(path)
        digest.update(f"\n{path}\t{int(label)}\t{size}\t{mtime}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- the store


@dataclass
class FeatureStore:
    """Cached outputs of the backbone chain up to (not including) stage ``chain_index``,
    one row per readable image: the first :attr:`memory_rows` rows in memory, the rest in
    a file."""

    chain_index: int
    labels: torch.Tensor  # (N,) int64
    keep: torch.Tensor  # (N,) indices into the image list (unreadable images are left out)
    row_shape: tuple[int, ...]
    dtype: torch.dtype
    memory: torch.Tensor  # (memory_rows, *row_shape)
    key: str | None = None
    # Augmented views per image: rows come in groups of this many, one image's views in
    # view order (``keep`` repeats the image's index); 1 for un-augmented features.
    views_per_image: int = 1
    reused: bool = False  # read from an entry another run wrote
    path: Path | None = None  # the entry file, when kept for reuse
    _file: BinaryIO | None = None
    _file_first_row: int = 0  # row number of the file's first row
    _file_offset: int = 0  # byte offset of that row in the file
    _budget: MemoryBudget | None = None
    _reserved: int = 0
    _closed: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def row_bytes(self) -> int:
        n = 1
        for d in self.row_shape:
            n *= d
        return n * _itemsize(self.dtype)

    @property
    def memory_rows(self) -> int:
        return int(self.memory.shape[0])

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    @property
    def memory_bytes(self) -> int:
        return self.memory_rows * self.row_bytes

    @property
    def spilled_bytes(self) -> int:
        return self.nbytes - self.memory_bytes

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of ``rows`` (indices into the store), in that order."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        m = self.memory_rows
        if len(self) == m or bool((rows < m).all()):
            return self.memory[rows], self.labels[rows]
        out = torch.empty((len(rows), *self.row_shape), dtype=self.dtype)
        in_memory = rows < m
        if bool(in_memory.any()):
            out[in_memory] = self.memory[rows[in_memory]]
        on_disk = (~in_memory).nonzero().flatten()
        self._read_rows(rows[on_disk], out, on_disk)
        return out, self.labels[rows]

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(features, labels, store rows) in store order."""
        for start in range(0, len(self), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(self)))
            feats, labels = self.take(rows)
            yield feats, labels, rows

    def _read_rows(self, rows: torch.Tensor, out: torch.Tensor, slots: torch.Tensor) -> None:
        """Read file rows into ``out[slots]``, merging runs of consecutive rows."""
        if self._file is None:
            raise RuntimeError("feature store was closed")
        order = torch.argsort(rows)
        sorted_rows = rows[order].tolist()
        sorted_slots = slots[order].tolist()
        size = self.row_bytes
        i = 0
        while i < len(sorted_rows):
            j = i + 1
            while j < len(sorted_rows) and sorted_rows[j] == sorted_rows[j - 1] + 1:
                j += 1
            count = j - i
            buffer = bytearray(count * size)
            self._file.seek(self._file_offset + (sorted_rows[i] - self._file_first_row) * size)
            if self._file.readinto(buffer) != len(buffer):
                raise OSError(f"feature cache file {self.path or '(temporary)'} is truncated")
            block = torch.frombuffer(buffer, dtype=torch.uint8).view(self.dtype).view(count, *self.row_shape)
            for k in range(count):
                out[sorted_slots[i + k]] = block[k]
            i = j

    def close(self) -> None:
        """Give back the memory and close (for a temporary spill file: delete) the file."""
        if self._closed:
            return
        self._closed = True
        if self._budget is not None:
            self._budget.release(self._reserved)
            self._reserved = 0
        self.memory = self.memory[:0]
        if self._file is not None:
            self._file.close()
            self._file = None


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.contiguous().view(-1).view(torch.uint8)
    return memoryview(flat.numpy())


# --------------------------------------------------------------------------- writing


class FeatureWriter:
    """Collects rows batch by batch: into memory while ``budget`` allows, then into a file.

    With ``persist`` every row also goes to a temporary file in ``directory`` that
    :meth:`finish` renames to ``<key>.dtlf``; without it a file is used only for the rows
    beyond the budget, an anonymous temporary one that disappears when closed.
    :meth:`abort` (or an exception) leaves nothing behind.
    """

    def __init__(
        self,
        chain_index: int,
        *,
        budget: MemoryBudget,
        dtype: torch.dtype,
        key: str | None = None,
        directory: Path | None = None,
        persist: bool = False,
        meta: dict[str, Any] | None = None,
        views_per_image: int = 1,
    ) -> None:
        self.chain_index = chain_index
        self.views_per_image = int(views_per_image)
        self.budget = budget
        self.dtype = dtype
        self.key = key
        self.directory = Path(directory) if directory is not None else None
        self.persist = bool(persist and key and directory is not None)
        self.meta = dict(meta or {})
        self.row_shape: tuple[int, ...] | None = None
        self._memory: list[torch.Tensor] = []
        self._memory_rows = 0
        self._reserved = 0
        self._spilling = False
        self._file: BinaryIO | None = None
        self._tmp_path: Path | None = None
        self._file_first_row = 0
        self._rows = 0
        self._labels: list[torch.Tensor] = []
        self._keep: list[torch.Tensor] = []

    def add(self, features: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        if features.shape[0] == 0:
            return
        feats = features.detach().to("cpu")
        if feats.dtype != self.dtype:
            converted = feats.to(self.dtype)
            if (
                self.dtype == torch.float16
                and not bool(torch.isfinite(converted).all())
                and bool(torch.isfinite(feats).all())
            ):
                raise FeatureRangeError("features exceed the fp16 range")
            feats = converted
        feats = feats.contiguous()
        if self.row_shape is None:
            self.row_shape = tuple(feats.shape[1:])
            if self.persist:
                self._open_file(persistent=True)
        n = feats.shape[0]
        row_bytes = feats[0].numel() * feats.element_size() if n else 0
        self._labels.append(labels.detach().to("cpu", torch.long))
        self._keep.append(indices.detach().to("cpu", torch.long))
        if self.persist:
            self._file.write(_raw_bytes(feats))
        fit = 0
        if not self._spilling:
            fit = n
            while fit > 0 and not self.budget.reserve(fit * row_bytes):
                # all or nothing per reservation: find how many rows of this batch fit
                fit = min(fit - 1, self.budget.available // max(row_bytes, 1))
            self._reserved += fit * row_bytes
            if fit:
                self._memory.append(feats[:fit].clone())
                self._memory_rows += fit
            if fit < n:
                self._spilling = True
                if not self.persist:
                    self._file_first_row = self._rows + fit
                    self._open_file(persistent=False)
        if self._spilling and not self.persist:
            self._file.write(_raw_bytes(feats[fit:]))
        self._rows += n

    def _open_file(self, persistent: bool) -> None:
        if persistent:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.key}.", suffix=".tmp", dir=self.directory)
            self._tmp_path = Path(name)
            self._file = os.fdopen(fd, "w+b")
        else:
            directory = self.directory or Path(tempfile.gettempdir())
            directory.mkdir(parents=True, exist_ok=True)
            # Deleted on close (and at once on POSIX), so a crash leaves nothing behind.
            self._file = tempfile.TemporaryFile(prefix="spill-", suffix=".tmp", dir=directory)

    def finish(self) -> FeatureStore:
        """The completed store; a persistent entry is renamed into place."""
        if self._rows == 0:
            self.abort()
            raise ValueError("no readable images to extract features from")
        memory = (
            torch.cat(self._memory) if self._memory else torch.empty((0, *self.row_shape), dtype=self.dtype)
        )
        labels = torch.cat(self._labels)
        keep = torch.cat(self._keep)
        path = None
        file = self._file
        if self.persist:
            trailer = json.dumps(
                {
                    **self.meta,
                    "key": self.key,
                    "rows": self._rows,
                    "row_shape": list(self.row_shape),
                    "dtype": _dtype_name(self.dtype),
                    "chain_index": self.chain_index,
                    "views_per_image": self.views_per_image,
                    "labels": labels.tolist(),
                    "keep": keep.tolist(),
                    "created": time.time(),
                }
            ).encode()
            file.write(trailer)
            file.write(_TRAILER.pack(len(trailer), MAGIC))
            file.flush()
            os.fsync(file.fileno())
            path = self.directory / f"{self.key}{ENTRY_SUFFIX}"
            file.close()
            os.replace(self._tmp_path, path)
            self._tmp_path = None
            file = path.open("rb")
        elif file is not None:
            file.flush()
        self._file = None
        store = FeatureStore(
            chain_index=self.chain_index,
            labels=labels,
            keep=keep,
            row_shape=self.row_shape,
            dtype=self.dtype,
            memory=memory,
            key=self.key,
            views_per_image=self.views_per_image,
            path=path,
            _file=file,
            _file_first_row=0 if self.persist else self._file_first_row,
            _budget=self.budget,
            _reserved=self._reserved,
        )
        self._reserved = 0
        self._memory = []
        return store

    def abort(self) -> None:
        """Drop everything written so far (memory, temporary file)."""
        self.budget.release(self._reserved)
        self._reserved = 0
        self._memory = []
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None


class FeatureRangeError(ValueError):
    """Features do not fit the storage dtype (fp16 overflow)."""


# --------------------------------------------------------------------------- reading entries


def open_entry(key: str, budget: MemoryBudget, directory: Path | None = None) -> FeatureStore | None:
    """The kept store named ``key``, or ``None`` when there is none (or it is damaged:
    then it is deleted). Rows go to memory while ``budget`` allows."""
    directory = Path(directory) if directory is not None else features_dir()
    path = directory / f"{key}{ENTRY_SUFFIX}"
    try:
        handle = path.open("rb")
    except OSError:
        return None
    try:
        meta = _read_trailer(handle, path)
        if meta is None or meta.get("key") != key:
            raise ValueError("damaged")
        dtype = _DTYPES[meta["dtype"]]
        row_shape = tuple(int(d) for d in meta["row_shape"])
        rows = int(meta["rows"])
        labels = torch.tensor(meta["labels"], dtype=torch.long)
        keep = torch.tensor(meta["keep"], dtype=torch.long)
        views = int(meta.get("views_per_image", 1))
        if len(labels) != rows or len(keep) != rows or views < 1 or rows % views:
            raise ValueError("damaged")
        row_bytes = _itemsize(dtype)
        for d in row_shape:
            row_bytes *= d
        memory_rows = min(rows, budget.available // max(row_bytes, 1))
        while memory_rows and not budget.reserve(memory_rows * row_bytes):
            memory_rows = min(memory_rows - 1, budget.available // max(row_bytes, 1))
        buffer = bytearray(memory_rows * row_bytes)
        handle.seek(0)
        if handle.readinto(buffer) != len(buffer):
            budget.release(memory_rows * row_bytes)
            raise ValueError("damaged")
        memory = (
            torch.frombuffer(buffer, dtype=torch.uint8).view(dtype).view(memory_rows, *row_shape)
            if memory_rows
            else torch.empty((0, *row_shape), dtype=dtype)
        )
    except (ValueError, KeyError, TypeError, OSError):
        handle.close()
        path.unlink(missing_ok=True)
        return None
    try:
        os.utime(path)  # most recently used: kept longest by prune()
    except OSError:
        pass
    if memory_rows == rows:
        handle.close()
        handle = None
    return FeatureStore(
        chain_index=int(meta["chain_index"]),
        labels=labels,
        keep=keep,
        row_shape=row_shape,
        dtype=dtype,
        memory=memory,
        key=key,
        views_per_image=views,
        reused=True,
        path=path,
        _file=handle,
        _budget=budget,
        _reserved=memory_rows * row_bytes,
    )


def _read_trailer(handle: BinaryIO, path: Path) -> dict[str, Any] | None:
    size = os.fstat(handle.fileno()).st_size
    if size < _TRAILER.size:
        return None
    handle.seek(size - _TRAILER.size)
    length, magic = _TRAILER.unpack(handle.read(_TRAILER.size))
    if magic != MAGIC or length > size - _TRAILER.size:
        return None
    handle.seek(size - _TRAILER.size - length)
    meta = json.loads(handle.read(length).decode())
    row_bytes = _itemsize(_DTYPES[meta["dtype"]])
    for d in meta["row_shape"]:
        row_bytes *= int(d)
    if int(meta["rows"]) * row_bytes + length + _TRAILER.size != size:
        return None
    return meta


def prune(
    directory: Path | None = None, keep_bytes: int | None = None, protect: Iterable[Path] = ()
) -> list[Path]:
    """Delete the least recently used entries beyond ``keep_bytes`` and temporary files
    older than a day (left by interrupted writes); returns what was deleted."""
    directory = Path(directory) if directory is not None else features_dir()
    keep_bytes = disk_limit_bytes() if keep_bytes is None else keep_bytes
    protected = {Path(p).resolve() for p in protect}
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    now = time.time()
    entries = []
    for path in directory.iterdir():
        try:
            st = path.stat()
        except OSError:
            continue
        if path.name.endswith(".tmp"):
            if now - st.st_mtime > STALE_TEMP_SECONDS and _unlink(path):
                removed.append(path)
        elif path.suffix == ENTRY_SUFFIX:
            entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= keep_bytes:
            break
        if path.resolve() in protected:
            continue
        if _unlink(path):
            removed.append(path)
            total -= size
    return removed


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:  # in use by another process (Windows) or already gone
        return False


# --------------------------------------------------------------------------- extraction


def extract_features(
    run_prefix: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    chain_index: int,
    *,
    budget: MemoryBudget | None = None,
    dtype: torch.dtype = torch.float16,
    key: str | None = None,
    directory: Path | None = None,
    persist: bool = False,
    meta: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    views_per_image: int = 1,
) -> FeatureStore:
    """Run ``run_prefix`` once over ``batches`` of (images, labels, item indices) and
    keep its outputs (``views_per_image`` rows per image, when the batches hold each
    image's augmented views one after the other). Raises
    :class:`~desktop_tl.core.cancelled.Cancelled` when ``should_stop`` asks to stop
    part-way and :class:`FeatureRangeError` when fp16 cannot hold the features; either
    way nothing is kept."""
    writer = FeatureWriter(
        chain_index,
        budget=budget if budget is not None else MemoryBudget(2**62),
        dtype=dtype,
        key=key,
        directory=directory,
        persist=persist,
        meta=meta,
        views_per_image=views_per_image,
    )
    done = 0
    try:
        for images, labels, indices in batches:
            if should_stop is not None and should_stop():
                raise Cancelled()
            writer.add(run_prefix(images), labels, indices)
            done += len(labels) // views_per_image
            if progress is not None:
                progress(done)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
