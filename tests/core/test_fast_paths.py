"""The engine's fast paths give the slow path's results, and are left when they must be.

A small real convolutional backbone (seeded, with BatchNorm statistics and a dropout
stage) trains on small generated photos of two colours through the real Trainer, with
the real dataset loaders and heads.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from desktop_tl.core import events as ev
from desktop_tl.core.config import RunConfig
from desktop_tl.core.transforms import build_transform
from desktop_tl.core.loaders import make_loader
from desktop_tl.core.feature_cache import ENTRY_SUFFIX, MemoryBudget, open_entry
from desktop_tl.core.image_cache import DecodedImageDataset, DecodedImages, EpochSampler
from desktop_tl.core.images import open_rgb
from desktop_tl.core.predict import Predictor
from desktop_tl.core.training import Trainer
from desktop_tl.core.weights import file_provenance
from desktop_tl.plugin.descriptors import (
    Backbone,
    BackboneProvider,
    Preprocessing,
    WeightsProvenance,
    WeightsStatus,
)
from helpers_counting import CountingLoadsHost
from helpers_data import make_image_folder, write_image

PRE = Preprocessing(resize=36, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
FEATURES = 32


# --------------------------------------------------------------------------- a small backbone


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def tiny_backbone(seed: int = 0) -> nn.Sequential:
    module = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
                    bn=nn.BatchNorm2d(16),
                    act=nn.ReLU(),
                )
            ),
            blocks=nn.Sequential(Block(16, 16, 2), Block(16, 16, 1), Block(16, FEATURES, 2)),
            drop=nn.Dropout(0.5),  # parameter-free: only eval mode makes the prefix a fixed function
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # seeded weights and BatchNorm statistics that are not the identity
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
                elif name.endswith("running_mean") or name.endswith("bias"):
                    tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
                elif name.endswith("bn.weight"):
                    tensor.copy_(1 + 0.1 * torch.randn(tensor.shape, generator=generator))
                else:
                    fan_in = tensor[0].numel()
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(fan_in))
    return module


def create_tiny(model_name: str, weights: str = "auto", preprocessing: Preprocessing = PRE) -> Backbone:
    module = tiny_backbone()
    if weights in ("auto", "none"):
        provenance = WeightsProvenance("random", False, detail="seeded test network")
    else:
        module.load_state_dict(load_file(weights))
        provenance = file_provenance("file", weights, "test weights")
    return Backbone(module, FEATURES, preprocessing, provenance)


class TinyHost:
    """The shipped dataset loaders and heads, and the small backbone above, taking its
    images at ``preprocessing``."""

    def __init__(self, preprocessing: Preprocessing = PRE) -> None:
        import dtl_heads
        import dtl_loaders

        self.loaders = {loader.id: loader for loader in dtl_loaders.dtl_dataset_loaders()}
        self.heads = {head.id: head for head in dtl_heads.dtl_head_types()}
        self.provider = BackboneProvider(
            id="tiny",
            display_name="Tiny",
            list_models=lambda: ["tiny"],
            create=functools.partial(create_tiny, preprocessing=preprocessing),
            weights_status=lambda name: WeightsStatus(True, "random"),
        )

    def dataset_loaders(self):
        return dict(self.loaders)

    def head_types(self):
        return dict(self.heads)

    def resolve_backbone(self, name: str):
        return self.provider, "tiny"


HOST = TinyHost()


def tiny_config(data: Path, out: Path, **train) -> RunConfig:
    config = RunConfig()
    config.data.path = str(data)
    config.data.num_workers = 0
    config.model.backbone = "tiny:tiny"
    config.model.head = "linear"
    config.out = str(out)
    config.train.batch_size = 8
    config.train.epochs = 3
    config.train.precision = "fp32"
    config.train.lr = 0.05
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def train(config: RunConfig, on_event=None) -> ev.RunFinished:
    finished = Trainer(config, host=HOST, on_event=on_event).run()
    assert finished.status == "completed", finished.reason
    return finished


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("DTL_CACHE_DIR", str(path))
    monkeypatch.setenv("DTL_FEATURE_CACHE_REUSE", "1")
    return path


def make_photos(root: Path) -> Path:
    make_image_folder(root, {"red": 12, "green": 12}, subset="train", size=(40, 40))
    make_image_folder(root, {"red": 6, "green": 6}, subset="val", size=(40, 40))
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


def events_of(summary, event):
    return [e for e in summary["feature_cache"] if e["event"] == event]


def head_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_file(run_dir / "checkpoints" / "last" / "model.safetensors")
    return {k: v for k, v in state.items() if k.startswith("head.")}


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def prefix_outputs(items, stop: str = "flatten") -> torch.Tensor:
    """The slow path: the original (unfolded) network in fp32, eval mode, from the files."""
    network = tiny_backbone().eval()
    transform = build_transform(PRE, "none", train=False)
    images = torch.stack([transform(open_rgb(path)) for path, _ in items])
    with torch.inference_mode():
        x = images
        for name, module in network.named_children():
            x = module(x)
            if name == stop:
                break
    return x


# --------------------------------------------------------------------------- same results


@pytest.mark.parametrize("precision, tolerance", [("fp32", 2e-3), ("bf16", 3e-2)])
def test_cached_features_are_the_frozen_prefix_output(photos, tmp_path, cache_dir, precision, tolerance):
    finished = train(tiny_config(photos, tmp_path / "run", epochs=1, precision=precision))
    built = events_of(finished.summary, "built")
    assert [(e["subset"], e["at"]) for e in built] == [
        ("train", "backbone.flatten"),
        ("val", "backbone.flatten"),
    ]
    assert built[0]["dtype"] == ("float16" if precision == "fp32" else "bfloat16")
    entries = sorted((cache_dir / "features").glob(f"*{ENTRY_SUFFIX}"))
    assert len(entries) == 2
    manifest = json.loads((tmp_path / "run" / "split.json").read_text())
    for entry in entries:
        store = open_entry(entry.name[: -len(ENTRY_SUFFIX)], MemoryBudget(2**30), cache_dir / "features")
        subset = "train" if len(store) == 24 else "val"
        items = [(str(photos / path), label) for path, label in manifest[subset]]
        expected = prefix_outputs([items[i] for i in store.keep.tolist()])
        cached = store.take(torch.arange(len(store)))[0].float()
        assert cached.shape == (len(store), FEATURES)
        error = (cached - expected).norm() / expected.norm()
        assert error < tolerance, (subset, float(error))


def test_a_head_trained_on_cached_features_matches_one_trained_through_the_backbone(
    photos, tmp_path, cache_dir
):
    cached = train(tiny_config(photos, tmp_path / "cached", epochs=4, seed=3))
    slow = train(tiny_config(photos, tmp_path / "slow", epochs=4, seed=3, feature_cache="off"))
    assert events_of(cached.summary, "built") and not events_of(slow.summary, "built")
    assert events_of(slow.summary, "off")[0]["reason"] == "feature cache turned off"
    a, b = head_weights(tmp_path / "cached"), head_weights(tmp_path / "slow")
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-2, atol=2e-3), key
    for fast_row, slow_row in zip(metric_rows(tmp_path / "cached"), metric_rows(tmp_path / "slow")):
        for column in ("train_loss", "val_loss"):
            fast_value, slow_value = float(fast_row[column]), float(slow_row[column])
            assert abs(fast_value - slow_value) < 2e-3 * max(1.0, slow_value), column
    assert cached.summary["val_acc"] == slow.summary["val_acc"] == 1.0


def test_spilled_features_train_exactly_like_features_in_memory(photos, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("DTL_FEATURE_CACHE_REUSE", "0")
    in_memory = train(tiny_config(photos, tmp_path / "memory", seed=5))
    spilled = train(tiny_config(photos, tmp_path / "spilled", seed=5, cache_budget_mb=0))
    for entry in events_of(in_memory.summary, "built"):
        assert entry["spilled_bytes"] == 0 and entry["memory_bytes"] == entry["bytes"] > 0
    for entry in events_of(spilled.summary, "built"):
        assert entry["memory_bytes"] == 0 and entry["spilled_bytes"] == entry["bytes"] > 0
    a, b = head_weights(tmp_path / "memory"), head_weights(tmp_path / "spilled")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not list((cache_dir / "features").iterdir())  # the spill file went with the run


# --------------------------------------------------------------------------- leaving the cache


def test_unfreezing_before_the_cache_point_mid_run_leaves_it_and_freezing_reenters(
    photos, tmp_path, cache_dir
):
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(photos, out, epochs=4, seed=1), host=HOST)
    applied: list[ev.FreezeApplied] = []

    def on_event(event):
        if isinstance(event, ev.BatchEnded) and event.batch == 0 and event.epoch in (1, 2):
            trainer.send(ev.SetFreeze({"backbone.blocks.2": event.epoch == 1}))
        if isinstance(event, ev.FreezeApplied):
            applied.append(event)

    trainer.subscribe(on_event)
    finished = trainer.run()
    assert finished.status == "completed", finished.reason
    assert [a.feature_cache for a in applied] == ["left", "on"]
    assert [(a.epoch, a.step) for a in applied] == [(1, 4), (2, 7)]  # at the next batch

    log = [(e["event"], e.get("subset"), e.get("at")) for e in finished.summary["feature_cache"]]
    assert log == [
        ("built", "train", "backbone.flatten"),
        ("built", "val", "backbone.flatten"),
        ("left", "train+val", None),
        ("built", "val", "backbone.blocks.1"),  # evaluating epoch 2, for the new first trainable stage
        ("built", "train", "backbone.blocks.1"),  # epoch 3 starts
        ("advanced", "val", "backbone.flatten"),  # evaluating epoch 3, blocks.2 frozen again
        ("advanced", "train", "backbone.flatten"),  # epoch 4 starts
    ]
    left = events_of(finished.summary, "left")[0]
    assert left["reason"] == "backbone.blocks.2 trainable" and left["step"] == 4
    metrics = metric_rows(out)
    assert [row["feature_cache"] for row in metrics] == [
        "on@backbone.flatten",
        "val@backbone.blocks.1",
        "on@backbone.blocks.1",
        "on@backbone.flatten",
    ]
    run_log = (out / "run.log").read_text()
    assert "feature cache left (train, val): backbone.blocks.2 trainable" in run_log
    assert "moved from after backbone.blocks.1 to after backbone.flatten" in run_log
    assert finished.summary["freeze_changes"][0]["feature_cache"] == "left"

    # blocks.2 trained for an epoch; the moved cache must hold its new output: the last
    # validation loss (from the cache) equals the checkpoint's own, through the images
    predictor = Predictor.from_run_dir(out / "checkpoints" / "last", host=HOST)
    manifest = json.loads((out / "split.json").read_text())
    paths = [photos / path for path, _ in manifest["val"]]
    predictions = predictor.predict(paths, top_k=2)
    names = finished.summary["classes"]
    loss = -sum(math.log(dict(p.top)[names[label]]) for p, (_, label) in zip(predictions, manifest["val"]))
    last_val_loss = float(metrics[-1]["val_loss"])
    assert abs(loss / len(paths) - last_val_loss) < 1e-3 * max(1.0, last_val_loss)
    assert not torch.equal(
        load_file(out / "checkpoints" / "last" / "model.safetensors")["backbone.blocks.2.conv.weight"],
        tiny_backbone().state_dict()["blocks.2.conv.weight"],
    )


def test_augmentation_caches_validation_features_only_and_decodes_images_once(photos, tmp_path, cache_dir):
    config = tiny_config(photos, tmp_path / "run", epochs=2, augmented_views=0)
    config.data.augment = "light"
    config.freeze.preset = "last:1"
    finished = train(config)
    summary = finished.summary
    assert events_of(summary, "off") == [
        {
            "step": 0,
            "event": "off",
            "subset": "train",
            "reason": "augmentation 'light' changes images every epoch",
        }
    ]
    assert [(e["subset"], e["at"]) for e in events_of(summary, "built")] == [("val", "backbone.blocks.1")]
    decoded = events_of(summary, "decoded")
    assert len(decoded) == 1 and decoded[0]["images"] == 24 and decoded[0]["bytes"] == 24 * 3 * 36 * 36
    assert {row["feature_cache"] for row in metric_rows(tmp_path / "run")} == {"val@backbone.blocks.1"}


def test_resumed_augmented_run_ends_where_an_uninterrupted_one_would(photos, tmp_path, cache_dir):
    def config(out):
        c = tiny_config(photos, out, epochs=3, seed=11, augmented_views=0)  # images read every epoch
        c.data.augment = "light"
        c.freeze.preset = "last:2"
        return c

    train(config(tmp_path / "full"))
    trainer = Trainer(config(tmp_path / "cut"), host=HOST)
    trainer.subscribe(
        lambda e: isinstance(e, ev.BatchEnded) and e.epoch == 2 and e.batch == 1 and trainer.send(ev.Cancel())
    )
    assert trainer.run().status == "cancelled"
    finished = Trainer(config(tmp_path / "cut"), host=HOST, resume=True).run()
    assert finished.status == "completed", finished.reason
    a = load_file(tmp_path / "full" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "last" / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_outputs_larger_than_the_image_are_recomputed_not_cached(photos, tmp_path, cache_dir):
    config = tiny_config(photos, tmp_path / "run", epochs=1)
    config.freeze.preset = "last:3"  # every block trains: the cache would hold the stem's output
    summary = train(config).summary
    assert not events_of(summary, "built")
    reasons = {e["subset"]: e["reason"] for e in events_of(summary, "off")}
    assert (
        reasons["train"]
        == reasons["val"]
        == (
            "the output of backbone.stem (4,096 values per image) is larger than the image "
            "(3,072); recomputing it is cheaper"
        )
    )
    assert {e["subset"] for e in events_of(summary, "decoded")} == {"train", "val"}


def test_frozen_stages_run_under_inference_mode_even_without_the_cache(photos, tmp_path, cache_dir):
    config = tiny_config(photos, tmp_path / "run", epochs=1, feature_cache="off")
    config.freeze.preset = "last:1"
    modes: dict[str, set] = {"frozen": set(), "trainable": set()}
    trainer = Trainer(config, host=HOST)

    def watch(event):
        if isinstance(event, ev.RunStarted):
            model = trainer.built.model
            model.backbone.blocks[1].act.register_forward_hook(
                lambda m, i, o: modes["frozen"].add((torch.is_inference_mode_enabled(), o.requires_grad))
            )
            model.backbone.blocks[2].act.register_forward_hook(
                lambda m, i, o: modes["trainable"].add((torch.is_inference_mode_enabled(), o.requires_grad))
            )

    trainer.subscribe(watch)
    assert trainer.run().status == "completed"
    assert modes["frozen"] == {(True, False)}  # training and evaluation alike
    assert (False, True) in modes["trainable"]  # training records autograd from there on


# --------------------------------------------------------------------------- reuse and staleness


def test_features_are_reused_across_runs_but_never_stale(tmp_path, cache_dir):
    photos = make_photos(tmp_path / "photos")

    def run(name, **options):
        config = tiny_config(photos, tmp_path / name, epochs=1)
        for key, value in options.items():
            setattr(config.model, key, value)
        return {e["subset"]: e["reused"] for e in events_of(train(config).summary, "built")}

    assert run("first") == {"train": False, "val": False}
    assert run("second") == {"train": True, "val": True}

    changed = sorted((photos / "train" / "green").iterdir())[3]
    write_image(changed, colour=(30, 30, 200), seed=123, size=(41, 40))  # same path, new pixels
    assert run("image-changed") == {"train": False, "val": True}
    assert run("again") == {"train": True, "val": True}

    weights = []
    for seed in (1, 2):
        path = tmp_path / f"weights-{seed}.safetensors"
        save_file({k: v.contiguous() for k, v in tiny_backbone(seed).state_dict().items()}, str(path))
        weights.append(str(path))
    assert run("weights-1", weights=weights[0]) == {"train": False, "val": False}
    assert run("weights-1-again", weights=weights[0]) == {"train": True, "val": True}
    assert run("weights-2", weights=weights[1]) == {"train": False, "val": False}


def test_cancelling_during_extraction_leaves_no_cache_entry(photos, tmp_path, cache_dir):
    trainer = Trainer(tiny_config(photos, tmp_path / "run", batch_size=4), host=HOST)
    trainer.subscribe(
        lambda e: (
            isinstance(e, ev.StageChanged)
            and e.stage == "features"
            and e.done >= 8
            and trainer.send(ev.Cancel())
        )
    )
    assert trainer.run().status == "cancelled"
    assert not (cache_dir / "features").exists() or not list((cache_dir / "features").iterdir())


# --------------------------------------------------------------------------- given data, reports, logging


def test_data_prepared_before_the_run_is_used_unless_its_settings_differ(photos, tmp_path, cache_dir, caplog):
    import copy

    from desktop_tl.core.data import prepare_data

    host = CountingLoadsHost(HOST)
    config = tiny_config(photos, tmp_path / "run", epochs=1)
    prepared = prepare_data(config.data, host)
    assert host.loads == 1
    finished = Trainer(config, host=host, prepared=prepared, prepared_with=config.data).run()
    assert finished.status == "completed", finished.reason
    assert host.loads == 1  # the run did not read the dataset again
    assert json.loads((tmp_path / "run" / "split.json").read_text())["val"]

    checked_with = copy.deepcopy(config.data)
    checked_with.split_seed = 5  # checked with other settings than the run's
    messages: list[str] = []
    trainer = Trainer(
        tiny_config(photos, tmp_path / "run2", epochs=1),
        host=host,
        prepared=prepared,
        prepared_with=checked_with,
    )
    trainer.subscribe(lambda e: isinstance(e, ev.LogMessage) and messages.append(e.message))
    with caplog.at_level("INFO", logger="desktop_tl.engine"):
        assert trainer.run().status == "completed"
    assert host.loads == 2
    assert any("data settings changed" in m for m in messages)
    # every engine message also reaches the logging module, warnings as warnings
    logged = {(r.levelname, r.getMessage()) for r in caplog.records if r.name == "desktop_tl.engine"}
    assert ("WARNING", "tiny:tiny starts from random weights (not pretrained)") in logged
    assert set(messages) <= {message for _, message in logged}


def test_epoch_and_run_events_carry_typed_reports(photos, tmp_path, cache_dir):
    from desktop_tl.core.reports import EpochReport, EvaluationReport

    events: list = []
    trainer = Trainer(tiny_config(photos, tmp_path / "run", epochs=2), host=HOST)
    unsubscribe = trainer.subscribe(events.append)
    finished = trainer.run()
    assert finished.status == "completed", finished.reason
    epochs = [e for e in events if isinstance(e, ev.EpochEnded)]
    assert [e.report.epoch for e in epochs] == [1, 2]
    last = epochs[-1].report
    assert isinstance(last, EpochReport) and isinstance(last.validation, EvaluationReport)
    assert last.validation.num_images == 12 and sum(map(sum, last.validation.confusion)) == 12
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["metrics"] == last.row()
    assert finished.validation == last.validation  # the run ends with the last epoch's report
    assert finished.summary["confusion"] == last.validation.confusion
    assert finished.summary["misclassified"] == last.validation.misclassified_dicts()
    assert finished.test is None  # no test split
    assert events[-1] is finished
    # a predictor scores the same images with the same loop
    predictor = Predictor.from_run_dir(tmp_path / "run" / "checkpoints" / "last", host=HOST)
    manifest = json.loads((tmp_path / "run" / "split.json").read_text())
    report = predictor.evaluate([(photos / path, label) for path, label in manifest["val"]])
    assert report.confusion == last.validation.confusion
    assert abs(report.loss - last.validation.loss) < 1e-3 * max(1.0, last.validation.loss)

    unsubscribe()
    count = len(events)
    assert Trainer(tiny_config(photos, tmp_path / "run2", epochs=1), host=HOST).run().status == "completed"
    assert len(events) == count  # a finished trainer's subscriber hears nothing of another run


# --------------------------------------------------------------------------- decoded images


def test_decoded_images_give_the_evaluation_transform_exactly(photos):
    items = [(str(p), 0) for p in sorted((photos / "val" / "red").iterdir())]
    budget = MemoryBudget(4 * 3 * 36 * 36)  # room for four of the six
    decoded = DecodedImages.build(items, PRE, budget)
    assert decoded.held == 4 and budget.used == decoded.nbytes == 4 * 3 * 36 * 36
    dataset = DecodedImageDataset(items, decoded, PRE, "light", train=False)
    transform = build_transform(PRE, "none", train=False)
    for index, (path, _) in enumerate(items):
        image, label, item = dataset[index]
        assert torch.equal(image, transform(open_rgb(path))) and item == index
    decoded.close()
    assert budget.used == 0


def test_augmentation_is_seeded_per_image_and_does_not_depend_on_worker_processes(photos):
    items = [(str(p), i % 2) for i, p in enumerate(sorted((photos / "train").rglob("*.png")))][:10]
    decoded = DecodedImages.build(items, PRE, MemoryBudget(2**30))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()

    def epoch_batches(num_workers, seed):
        sampler = EpochSampler()
        loader = make_loader(
            DecodedImageDataset(items, decoded, PRE, "light", train=True),
            batch_size=4,
            shuffle=False,
            sampler=sampler,
            num_workers=num_workers,
        )
        result = []
        for epoch_seed in (seed, seed + 1):  # one loader, its workers kept, two epochs
            sampler.set_epoch(order, epoch_seed)
            result.append([(b.images.clone(), b.indices.clone()) for b in loader.batches()])
        return result

    state = torch.get_rng_state()
    here = epoch_batches(0, 7)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    in_worker = epoch_batches(1, 7)
    for epoch_here, epoch_worker in zip(here, in_worker):
        for (a, ia), (b, ib) in zip(epoch_here, epoch_worker):
            assert torch.equal(ia, ib) and torch.equal(a, b)
    assert not torch.equal(here[0][0][0], here[1][0][0])  # a new epoch draws new crops
    assert torch.cat([i for _, i in here[0]]).tolist() == order
