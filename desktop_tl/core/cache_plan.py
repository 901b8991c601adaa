"""Which part of the work is kept between epochs, following the freeze state.

The output of the frozen prefix is cached (:mod:`desktop_tl.core.feature_cache`) wherever
it cannot change: for validation images whenever a prefix exists, for training images
when there is also no random augmentation. With augmentation, the training cache holds
``train.augmented_views`` augmented views of each image, one drawn per image each epoch
(:mod:`desktop_tl.core.augmented_views`), when that costs fewer passes of the prefix
than the epochs do. The cache is left the moment a stage before it becomes trainable,
rebuilt at the next epoch for the new first trainable stage, and moved
deeper (from the cached rows, without the images) when more stages are frozen. A stage
whose output is larger than the image is not cached (early stages are cheap to run, their
outputs big). Images that must still be read every epoch are decoded once
(:mod:`desktop_tl.core.image_cache`).

All caches share one memory budget: training features first, then validation features,
then decoded images; beyond it features spill to the cache directory and images are
decoded again.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .distributed import SINGLE, Distributed
from .feature_cache import FeatureStore
from .run_context import RunContext

SUBSETS = ("train", "val")


class CachePlanner:
    """The feature caches and decoded images of one run's training and validation subsets."""

    def __init__(
        self,
        ctx: RunContext,
        prefix,
        reader,
        *,
        mode: str,
        budget_mb: int,
        reuse: bool,
        backbone_id: str,
        weights_sha256: str | None,
        precision: str,
        device: torch.device,
        distributed: Distributed = SINGLE,
        augmented_views: int = 0,
        epochs: int = 0,
    ) -> None:
        from .device import feature_dtype
        from .feature_cache import MemoryBudget, reuse_enabled

        self.ctx = ctx
        self.prefix = prefix
        self.reader = reader
        self.mode = mode
        self.backbone_id = backbone_id
        self.weights_sha256 = weights_sha256
        self.precision = precision
        self.device = device
        # Distributed: each process extracts its share, the processes trade features a
        # round at a time and each writes the whole; only rank 0 keeps the entry for later
        # runs (its key is a single process's).
        self.distributed = distributed
        # Augmented training views per image (0: augmented images are read every epoch),
        # worth extracting only when fewer than the epochs.
        self.augmented_views = int(augmented_views)
        self.epochs = int(epochs)
        self.caches: dict[str, FeatureStore | None] = {"train": None, "val": None}
        self.decoded: dict[str, Any] = {"train": None, "val": None}
        self.budget = MemoryBudget(int(budget_mb) * 2**20)
        self.reuse = reuse_enabled() and reuse
        self.feature_dtype = feature_dtype(precision)
        self.broken: str | None = None  # set when the cache directory fails us
        self.log: list[dict[str, Any]] = []  # what happened to the caches, for the summary
        self._off_logged: dict[str, str] = {}
        self._step = 0

    # ---- what may be cached

    def blocker(self, subset: str = "train") -> str | None:
        """None if ``subset``'s features may be cached now, else the reason they may not."""
        if self.mode == "off":
            return "feature cache turned off"
        if self.broken:
            return self.broken
        augment = self.reader.augment
        if subset == "train" and augment != "none":
            views = self.augmented_views
            changes = f"augmentation '{augment}' changes images every epoch"
            if views == 0:
                return changes
            if views >= self.epochs:
                return (
                    f"{changes}, and {views} augmented view{'s' if views > 1 else ''} per image "
                    f"would cost as many passes as the {self.epochs} epoch{'s' if self.epochs > 1 else ''}"
                )
        k = self.prefix.first_trainable()
        if k == 0:
            return "the whole backbone is trainable"
        crop = self.reader.preprocessing.crop
        row, image = self.prefix.row_numel(k, crop), 3 * crop**2
        if row > image:
            # Early stages are cheap to run and their outputs large: keeping them would
            # cost more memory (or disk reads) than it saves time.
            return (
                f"the output of {self.prefix.names[k - 1]} ({row:,} values per image) is "
                f"larger than the image ({image:,}); recomputing it is cheaper"
            )
        return None

    @property
    def status(self) -> str:
        """``on@<stage>`` (training and validation features cached after that stage),
        ``val@<stage>`` (validation features only) or ``off``."""
        names = self.prefix.names
        if self.caches["train"] is not None:
            return f"on@{names[self.caches['train'].chain_index - 1]}"
        if self.caches["val"] is not None:
            return f"val@{names[self.caches['val'].chain_index - 1]}"
        return "off"

    def views_of(self, subset: str) -> int:
        """Augmented views per image that ``subset``'s cache holds; 0 for un-augmented
        features."""
        return self.augmented_views if subset == "train" and self.reader.augment != "none" else 0

    def stale(self) -> list[str]:
        """Subsets whose cache sits after a stage that now trains."""
        k = self.prefix.first_trainable()
        return [s for s in SUBSETS if self.caches[s] is not None and k < self.caches[s].chain_index]

    # ---- leaving and closing

    def leave(self, reason: str, step: int, subsets=SUBSETS) -> None:
        left = [s for s in subsets if self.caches[s] is not None]
        for subset in left:
            self.caches[subset].close()
            self.caches[subset] = None
        if left:
            self.log.append({"step": step, "event": "left", "subset": "+".join(left), "reason": reason})
            self.ctx.log("info", f"feature cache left ({', '.join(left)}): {reason}")

    def close(self) -> None:
        """Release every cache and decoded-image store."""
        for subset in SUBSETS:
            if self.caches[subset] is not None:
                self.caches[subset].close()
                self.caches[subset] = None
            if self.decoded[subset] is not None:
                self.decoded[subset].close()
                self.decoded[subset] = None

    # ---- making the caches match the freeze state

    def ensure(self, step: int, subsets=SUBSETS) -> None:
        """Build, move deeper or leave the caches; decode the images of subsets that are
        read as images."""
        from .feature_cache import features_dir

        self._step = step
        k = self.prefix.first_trainable()
        wanted = []
        for subset in subsets:
            reason = self.blocker(subset)
            store = self.caches[subset]
            if reason is not None:
                if store is not None:
                    self.leave(reason, step, [subset])
                if self._off_logged.get(subset) != reason:
                    self._off_logged[subset] = reason
                    self.log.append({"step": step, "event": "off", "subset": subset, "reason": reason})
                    self.ctx.log("info", f"{subset} features not cached: {reason}")
                continue
            self._off_logged.pop(subset, None)
            if store is not None and store.chain_index > k:
                self.leave("a stage before the cached one is trainable", step, [subset])
                store = None
            if store is None or store.chain_index < k:
                wanted.append(subset)
                if self.decoded[subset] is not None:  # features replace the images
                    self.decoded[subset].close()
                    self.decoded[subset] = None
        for subset in wanted:
            while not self.broken:
                try:
                    if self.caches[subset] is None:
                        self._build(subset, k)
                    else:
                        self._advance(subset, k)
                    break
                except OSError as exc:
                    if self.reuse:  # the cache folder failed: keep features for this run only
                        self.reuse = False
                        self.ctx.log(
                            "warning",
                            f"cannot keep features in {features_dir()} "
                            f"({exc}); they are kept for this run only",
                        )
                        continue
                    self.broken = f"the feature cache could not be written ({exc})"
                    self.ctx.log("warning", f"{self.broken}; training continues without it")
                    self.leave(self.broken, step)
        for subset in subsets:
            if self.caches[subset] is None and self.decoded[subset] is None:
                self._decode_images(subset)

    def _feature_key(self, subset: str, k: int) -> str:
        from .feature_cache import feature_key, state_digest

        context = {
            "backbone": self.backbone_id,
            "weights_sha256": self.weights_sha256,
            "prefix_state": state_digest(self.prefix.modules[:k]),
            "preprocessing": self.reader.preprocessing.to_dict(),
            "transform": repr(self.reader.eval_transform),
            "stage": [k, self.prefix.names[k - 1]],
            "precision": self.precision,
            "device": self.device.type,
        }
        views = self.views_of(subset)
        if views:
            from .image_cache import tensor_transform

            # the views depend on the augmentation, their number and the run seed
            context["augmented_views"] = {
                "augment": self.reader.augment,
                "views": views,
                "seed": self.reader.seed,
                "transform": repr(tensor_transform(self.reader.preprocessing, self.reader.augment, True)),
            }
        return feature_key(context, self.reader.items(subset))

    def _build(self, subset: str, k: int) -> None:
        from .feature_cache import open_entry, prune

        where = self.prefix.names[k - 1]
        t0 = time.perf_counter()
        key = self._feature_key(subset, k)
        store = open_entry(key, self.budget) if self.reuse else None
        if not self.distributed.all_true(store is not None) and store is not None:
            store.close()  # another process must extract, and extraction is shared
            store = None
        views = self.views_of(subset)
        what = (
            f"{subset} features" if not views else f"{subset} features of {views} augmented views per image"
        )
        if store is not None:
            self.ctx.log("info", f"{what} after {where} reused from an earlier run")
        else:
            self.ctx.log("info", f"extracting {what} once after {where} (the stages before it are frozen)")
            store = self._extract(subset, k, key)
            if store.path is not None:
                in_use = [s.path for s in self.caches.values() if s is not None and s.path is not None]
                prune(protect=[store.path, *in_use])
        self.caches[subset] = store
        self._log_store("built", subset, store, time.perf_counter() - t0)

    def _log_store(self, event: str, subset: str, store: FeatureStore, seconds: float, **extra) -> None:
        if self.views_of(subset):
            extra = {"views": store.views_per_image, "augment": self.reader.augment, **extra}
        self.log.append(
            {
                "step": self._step,
                "event": event,
                "subset": subset,
                "at": self.prefix.names[store.chain_index - 1],
                "rows": len(store),
                "bytes": store.nbytes,
                "memory_bytes": store.memory_bytes,
                "spilled_bytes": store.spilled_bytes,
                "dtype": str(store.dtype).replace("torch.", ""),
                "reused": store.reused,
                "key": (store.key or "")[:16],
                "seconds": round(seconds, 3),
                **extra,
            }
        )

    def _extract(self, subset: str, k: int, key: str | None = None) -> FeatureStore:
        from .feature_cache import FeatureRangeError, extract_features, features_dir

        prefix = self.prefix
        items = self.reader.items(subset)
        label = "training" if subset == "train" else "validation"
        total = len(items)
        prefix.eval_stages(k)
        prefix.prepare(0, k)  # before the loader's threads start decoding

        def run_prefix(images):
            return prefix.run_frozen(prefix.to_device(images), 0, k)

        def progress(done):
            self.ctx.stage("features", f"Extracting {label} features…", done, total)

        dtype = self.feature_dtype
        persist = self.reuse and key is not None and self.distributed.is_main
        views = self.views_of(subset)
        while True:
            batches, run = self.reader.extraction_batches(items), run_prefix
            if self.distributed.active:
                batches = self._shared_batches(run_prefix, items, views)
                run = lambda features: features  # noqa: E731 (the prefix ran on each process's share)
            elif views:
                batches = self.reader.augmented_batches(items, views)
            try:
                return extract_features(
                    run,
                    batches,
                    k,
                    budget=self.budget,
                    dtype=dtype,
                    key=key,
                    directory=features_dir(),
                    persist=persist,
                    meta={"subset": subset, "at": prefix.names[k - 1]},
                    progress=progress,
                    should_stop=self.ctx.should_stop,
                    views_per_image=max(1, views),
                )
            except FeatureRangeError:
                if dtype == torch.bfloat16:
                    raise
                dtype = torch.bfloat16
                self.ctx.log("info", f"{label} features exceed the fp16 range; caching them as bf16")

    def _shared_batches(self, run_prefix, items: list, views: int):
        """Batches of (features, labels, item indices) over ``items`` (with ``views``
        augmented views of each, in view order, when ``views``), in item order, where this
        process ran ``run_prefix`` on its share of the images only (each view seeded by the
        image's place in ``items``, as in one process)."""
        reader = self.reader

        def extract(share):
            mine = [items[i] for i in share.tolist()]
            if views:
                batches = reader.augmented_batches(mine, views, share.tolist())
            else:
                batches = reader.extraction_batches(mine)
            for images, labels, positions in batches:
                yield run_prefix(images), labels, positions

        batch_items = max(1, reader.batch_size // views) if views else reader.batch_size
        return self.distributed.shared_extraction(
            extract, len(items), batch_items=batch_items, rows_per_item=max(1, views)
        )

    def _advance(self, subset: str, k: int) -> None:
        """Move ``subset``'s cache to stage ``k`` by running the newly frozen stages once
        over the cached rows (no images read)."""
        from .feature_cache import FeatureWriter, features_dir

        prefix = self.prefix
        old = self.caches[subset]
        t0 = time.perf_counter()
        prefix.eval_stages(k)
        prefix.prepare(old.chain_index, k)
        writer = FeatureWriter(
            k,
            budget=self.budget,
            dtype=old.dtype,
            directory=features_dir(),
            views_per_image=old.views_per_image,
        )
        try:
            for feats, labels, rows in old.batches(max(self.reader.batch_size, 64)):
                out = prefix.run_frozen(prefix.to_device(feats), old.chain_index, k)
                writer.add(out, labels, old.keep[rows])
            store = writer.finish()
        except BaseException:
            writer.abort()
            raise
        previous = prefix.names[old.chain_index - 1]
        old.close()
        self.caches[subset] = store
        self.ctx.log(
            "info", f"{subset} feature cache moved from after {previous} to after {prefix.names[k - 1]}"
        )
        self._log_store("advanced", subset, store, time.perf_counter() - t0, **{"from": previous})

    def _decode_images(self, subset: str) -> None:
        """Decode ``subset``'s images once and keep them (within the budget)."""
        from .image_cache import DecodedImages

        items = self.reader.items(subset)
        total = len(items)
        t0 = time.perf_counter()
        label = "training" if subset == "train" else "validation"

        def progress(done):
            self.ctx.stage("images", f"Decoding {label} images…", done, total)

        if self.budget.available == 0:
            decoded = DecodedImages.empty(total)
        else:
            decoded = DecodedImages.build(
                items,
                self.reader.preprocessing,
                self.budget,
                num_workers=self.reader.num_workers,
                progress=progress,
                should_stop=self.ctx.should_stop,
            )
            self.ctx.check_stop()
        self.decoded[subset] = decoded
        self.log.append(
            {
                "step": self._step,
                "event": "decoded",
                "subset": subset,
                "images": decoded.held,
                "of": total,
                "bytes": decoded.nbytes,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        self.ctx.log(
            "info",
            f"{decoded.held} of {total} {label} images decoded once and "
            f"kept ({decoded.nbytes / 2**20:.1f} MiB)",
        )
