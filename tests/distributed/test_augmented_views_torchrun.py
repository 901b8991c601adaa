"""Augmented views under torchrun: two CPU processes (gloo) extract the views of their
shares of the training images, and hold the same cache one process would have made."""

from __future__ import annotations

import torch
from test_torchrun import (
    check_launch,
    learning_columns,
    metrics,
    places,  # noqa: F401  (the fixture)
    run,
    run_file,
    single_command,
    summary,
    torchrun_command,
)


def test_two_processes_extract_the_views_one_process_would(places):  # noqa: F811
    tmp_path, env = places
    toml = run_file(tmp_path, epochs=3, augmented_views=2)
    args = ("--augment", "light", "--quiet")
    distributed = tmp_path / "distributed"
    check_launch(run(torchrun_command(str(toml), *args, "--out", str(distributed)), env, tmp_path))
    built = [e for e in summary(distributed)["feature_cache"] if e["event"] == "built"]
    assert [(e["subset"], e.get("views"), e["rows"]) for e in built] == [("train", 2, 48), ("val", None, 12)]
    assert "over 2 processes" in (distributed / "run.log").read_text()

    single = tmp_path / "single"
    check_launch(run(single_command(str(toml), *args, "--out", str(single)), env, tmp_path))
    # the views two processes extracted together are the entry one process looks for
    assert (
        "train features of 2 augmented views per image after backbone.flatten reused from an earlier run"
        in (single / "run.log").read_text()
    )
    assert learning_columns(metrics(distributed)) == learning_columns(metrics(single))

    # one process extracting on its own, into a cache of its own, makes the same views
    alone = tmp_path / "alone"
    check_launch(
        run(
            single_command(str(toml), *args, "--out", str(alone)),
            {**env, "DTL_CACHE_DIR": str(tmp_path / "own")},
            tmp_path,
        )
    )
    (key,) = {
        e["key"] for e in summary(alone)["feature_cache"] if e["event"] == "built" and e["subset"] == "train"
    }
    shared, own = (views_entry(tmp_path / folder / "features", key) for folder in ("cache", "own"))
    assert shared.shape == own.shape == (48, 1280)
    assert float((shared - own).norm() / own.norm()) < 1e-2


def views_entry(folder, key_start: str) -> torch.Tensor:
    from desktop_tl.core.feature_cache import ENTRY_SUFFIX, MemoryBudget, open_entry

    (path,) = [p for p in folder.glob(f"*{ENTRY_SUFFIX}") if p.name.startswith(key_start)]
    store = open_entry(path.name[: -len(ENTRY_SUFFIX)], MemoryBudget(2**30), folder)
    assert store.views_per_image == 2
    rows = store.take(torch.arange(len(store)))[0].float()
    store.close()
    return rows
