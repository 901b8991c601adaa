"""The augmented feature cache: with augmentation and a frozen prefix, K augmented views
of each training image are extracted once and each epoch trains on one view per image.

The small real convolutional backbone of ``test_fast_paths`` trains on small generated
photos through the real Trainer, loaders and heads.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from desktop_tl.core import events as ev
from desktop_tl.core.augmented_views import AugmentedViewsDataset, epoch_rows, view_seed
from desktop_tl.core.config import ConfigError, RunConfig
from desktop_tl.core.loaders import make_loader
from desktop_tl.core.training import Trainer
from test_fast_paths import HOST, PRE, events_of, head_weights, make_photos, metric_rows, tiny_config

TRAIN_IMAGES = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("DTL_CACHE_DIR", str(path))
    monkeypatch.setenv("DTL_FEATURE_CACHE_REUSE", "1")
    return path


def augmented_config(photos, out, views=2, augment="light", preset="head-only", **train) -> RunConfig:
    config = tiny_config(photos, out, augmented_views=views, **train)
    config.data.augment = augment
    config.freeze.preset = preset
    return config


def run(config: RunConfig, on_event=None) -> ev.RunFinished:
    trainer = Trainer(config, host=HOST)
    if on_event is not None:
        on_event(trainer)
    finished = trainer.run()
    assert finished.status == "completed", finished.reason
    return finished


def built_train(summary) -> list[dict]:
    return [e for e in events_of(summary, "built") if e["subset"] == "train"]


def losses(run_dir) -> list[tuple[str, str, str]]:
    return [(row["train_loss"], row["val_loss"], row["val_acc"]) for row in metric_rows(run_dir)]


# --------------------------------------------------------------------------- in a run


def test_augmented_views_are_extracted_once_and_the_head_trains_on_them(photos, tmp_path, cache_dir):
    rows_through_prefix: list[int] = []

    def count_prefix_rows(trainer):
        def count(module, inputs, output):
            if output.shape[0] > 2:  # probes of one or two blank or sample images are not counted
                rows_through_prefix.append(output.shape[0])

        def watch(event):
            if isinstance(event, ev.RunStarted):
                trainer.built.model.backbone.stem.act.register_forward_hook(count)

        trainer.subscribe(watch)

    out = tmp_path / "run"
    finished = run(augmented_config(photos, out, views=3, epochs=4), count_prefix_rows)
    (train,) = built_train(finished.summary)
    assert train["views"] == 3 and train["augment"] == "light" and not train["reused"]
    assert train["rows"] == 3 * TRAIN_IMAGES and train["at"] == "backbone.flatten"
    assert not events_of(finished.summary, "off") and not events_of(finished.summary, "decoded")
    # the prefix ran once over 3 views of each training image and once over validation
    assert sum(rows_through_prefix) == 3 * TRAIN_IMAGES + 12
    assert {row["feature_cache"] for row in metric_rows(out)} == {"on@backbone.flatten"}
    assert (
        "extracting train features of 3 augmented views per image once after backbone.flatten"
        in (out / "run.log").read_text()
    )
    assert finished.summary["val_acc"] == 1.0


def test_the_same_seed_gives_the_same_run_and_reuses_the_views(photos, tmp_path, cache_dir):
    first = run(augmented_config(photos, tmp_path / "first", seed=4))
    second = run(augmented_config(photos, tmp_path / "second", seed=4))
    assert [e["reused"] for e in built_train(first.summary)] == [False]
    assert [e["reused"] for e in built_train(second.summary)] == [True]
    assert losses(tmp_path / "first") == losses(tmp_path / "second")
    a, b = head_weights(tmp_path / "first"), head_weights(tmp_path / "second")
    assert all(torch.equal(a[key], b[key]) for key in a)

    other = run(augmented_config(photos, tmp_path / "other-seed", seed=5))
    assert [e["reused"] for e in built_train(other.summary)] == [False]  # views follow the seed
    assert losses(tmp_path / "other-seed") != losses(tmp_path / "first")


def test_views_differ_from_the_unaugmented_features_and_from_each_other(photos, tmp_path, cache_dir):
    from desktop_tl.core.feature_cache import ENTRY_SUFFIX, MemoryBudget, open_entry

    finished = run(augmented_config(photos, tmp_path / "run", views=2, epochs=3))
    key = built_train(finished.summary)[0]["key"]
    (entry,) = [p for p in (cache_dir / "features").glob(f"*{ENTRY_SUFFIX}") if p.name.startswith(key)]
    store = open_entry(entry.name[: -len(ENTRY_SUFFIX)], MemoryBudget(2**30), cache_dir / "features")
    assert store.views_per_image == 2 and len(store) == 2 * TRAIN_IMAGES
    assert store.keep.tolist() == [i for i in range(TRAIN_IMAGES) for _ in range(2)]
    rows = store.take(torch.arange(len(store)))[0].float().view(TRAIN_IMAGES, 2, -1)
    assert all(not torch.equal(rows[i, 0], rows[i, 1]) for i in range(TRAIN_IMAGES))
    store.close()


def test_a_resumed_run_ends_where_an_uninterrupted_one_would(photos, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("DTL_FEATURE_CACHE_REUSE", "0")  # the resumed run extracts the views again

    def config(out):
        return augmented_config(photos, out, views=2, epochs=4, seed=11, preset="last:1")

    full = run(config(tmp_path / "full"))
    assert built_train(full.summary)[0]["views"] == 2
    trainer = Trainer(config(tmp_path / "cut"), host=HOST)
    trainer.subscribe(
        lambda e: isinstance(e, ev.BatchEnded) and e.epoch == 2 and e.batch == 1 and trainer.send(ev.Cancel())
    )
    assert trainer.run().status == "cancelled"
    resumed = Trainer(config(tmp_path / "cut"), host=HOST, resume=True).run()
    assert resumed.status == "completed", resumed.reason
    assert built_train(resumed.summary)[0]["views"] == 2
    a = load_file(tmp_path / "full" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "last" / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert losses(tmp_path / "full") == losses(tmp_path / "cut")


def test_making_the_cached_prefix_trainable_leaves_the_cache(photos, tmp_path, cache_dir):
    out = tmp_path / "run"
    applied: list[ev.FreezeApplied] = []

    def unfreeze_in_epoch_two(trainer):
        def on_event(event):
            if isinstance(event, ev.BatchEnded) and event.epoch == 1 and event.batch == 0:
                trainer.send(ev.SetFreeze({"backbone.blocks.1": True}))
            if isinstance(event, ev.FreezeApplied):
                applied.append(event)

        trainer.subscribe(on_event)

    finished = run(augmented_config(photos, out, views=2, epochs=4, preset="last:1"), unfreeze_in_epoch_two)
    assert [a.feature_cache for a in applied] == ["left"]
    log = [
        (e["event"], e.get("subset"), e.get("at"), e.get("views")) for e in finished.summary["feature_cache"]
    ]
    assert log == [
        ("built", "train", "backbone.blocks.1", 2),
        ("built", "val", "backbone.blocks.1", None),
        ("left", "train+val", None, None),
        ("built", "val", "backbone.blocks.0", None),
        ("built", "train", "backbone.blocks.0", 2),  # epoch 3: views again, after the new prefix
    ]
    assert [row["feature_cache"] for row in metric_rows(out)] == [
        "on@backbone.blocks.1",
        "val@backbone.blocks.0",
        "on@backbone.blocks.0",
        "on@backbone.blocks.0",
    ]
    assert "feature cache left (train, val): backbone.blocks.1 trainable" in (out / "run.log").read_text()


def test_spilled_views_train_exactly_like_views_in_memory(photos, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("DTL_FEATURE_CACHE_REUSE", "0")
    in_memory = run(augmented_config(photos, tmp_path / "memory", seed=5))
    spilled = run(augmented_config(photos, tmp_path / "spilled", seed=5, cache_budget_mb=0))
    (memory_entry,), (spilled_entry,) = built_train(in_memory.summary), built_train(spilled.summary)
    assert memory_entry["spilled_bytes"] == 0 and memory_entry["memory_bytes"] == memory_entry["bytes"] > 0
    assert spilled_entry["memory_bytes"] == 0 and spilled_entry["spilled_bytes"] == spilled_entry["bytes"]
    assert spilled_entry["bytes"] == memory_entry["bytes"]
    assert losses(tmp_path / "memory") == losses(tmp_path / "spilled")
    a, b = head_weights(tmp_path / "memory"), head_weights(tmp_path / "spilled")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not list((cache_dir / "features").iterdir())  # the spill file went with the run


def test_the_key_follows_the_augmentation_and_the_number_of_views(photos, tmp_path, cache_dir):
    def keys(name, **options):
        summary = run(augmented_config(photos, tmp_path / name, epochs=4, **options)).summary
        return {e["subset"]: (e["key"], e["reused"]) for e in events_of(summary, "built")}

    light2, light3 = keys("light-2", views=2), keys("light-3", views=3)
    strong2 = keys("strong-2", views=2, augment="strong")
    plain = keys("none", augment="none")
    trains = {light2["train"][0], light3["train"][0], strong2["train"][0], plain["train"][0]}
    assert len(trains) == 4 and not any(k["train"][1] for k in (light2, light3, strong2, plain))
    # validation is never augmented: one entry serves them all
    reused_val = (light2["val"][0], True)
    assert light2["val"][1] is False and light3["val"] == strong2["val"] == plain["val"] == reused_val
    assert keys("light-2-again", views=2)["train"] == (light2["train"][0], True)


def test_one_view_none_and_as_many_views_as_epochs(photos, tmp_path, cache_dir):
    one = run(augmented_config(photos, tmp_path / "one", views=1, epochs=2))
    (entry,) = built_train(one.summary)
    assert entry["views"] == 1 and entry["rows"] == TRAIN_IMAGES

    for views, epochs, reason in (
        (0, 2, "augmentation 'light' changes images every epoch"),
        (
            3,
            3,
            "augmentation 'light' changes images every epoch, and 3 augmented views per "
            "image would cost as many passes as the 3 epochs",
        ),
    ):
        summary = run(
            augmented_config(photos, tmp_path / f"views-{views}", views=views, epochs=epochs)
        ).summary
        assert not built_train(summary)
        assert [e["reason"] for e in events_of(summary, "off") if e["subset"] == "train"] == [reason]
        assert [e["subset"] for e in events_of(summary, "decoded")] == ["train"]  # read every epoch

    for bad in (-1, 65, 2.5, True):
        config = RunConfig()
        config.train.augmented_views = bad
        with pytest.raises(ConfigError, match="train.augmented_views"):
            config.validate()


# --------------------------------------------------------------------------- the views


def test_views_are_seeded_per_image_and_view_whatever_the_order_and_threads(photos):
    items = [(str(p), i % 2) for i, p in enumerate(sorted((photos / "train").rglob("*.png")))][:8]

    def views_by_item(decode_threads, order):
        dataset = AugmentedViewsDataset([items[i] for i in order], PRE, "light", 3, seed=7, positions=order)
        loader = make_loader(
            dataset, batch_size=3, shuffle=False, num_workers=0, decode_threads=decode_threads
        )
        result = {}
        for batch in loader.batches():
            for views, index in zip(batch.images, batch.indices.tolist()):
                result[order[index]] = views
        return result

    state = torch.get_rng_state()
    here = views_by_item(0, list(range(8)))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    threaded = views_by_item(2, [5, 2, 7, 0, 1, 6, 3, 4])
    assert sorted(here) == sorted(threaded) == list(range(8))
    for i in range(8):
        assert here[i].shape == (3, 3, PRE.crop, PRE.crop)
        assert torch.equal(here[i], threaded[i])
        assert not torch.equal(here[i][0], here[i][1]) and not torch.equal(here[i][1], here[i][2])
    assert len({view_seed(7, i, v) for i in range(100) for v in range(8)}) == 800
    assert view_seed(7, 3, 1) != view_seed(8, 3, 1)


def test_each_epoch_uses_every_image_once_as_one_of_its_views():
    def draw(epoch_seed):
        return epoch_rows(50, 4, torch.Generator().manual_seed(epoch_seed))

    first, again, second = draw(100_003), draw(100_003), draw(100_004)
    assert torch.equal(first, again)  # a resumed epoch draws the same rows
    for rows in (first, second):
        assert sorted((rows // 4).tolist()) == list(range(50))
    views_first = dict(zip((first // 4).tolist(), (first % 4).tolist()))
    views_second = dict(zip((second // 4).tolist(), (second % 4).tolist()))
    assert sum(views_first[i] != views_second[i] for i in range(50)) > 25
    assert set(views_first.values()) == {0, 1, 2, 3}
    # one view: the order over the images, as for un-augmented features
    assert torch.equal(
        epoch_rows(50, 1, torch.Generator().manual_seed(3)),
        torch.randperm(50, generator=torch.Generator().manual_seed(3)),
    )
