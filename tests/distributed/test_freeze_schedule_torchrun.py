"""A run file's freeze schedule under torchrun: two CPU processes (gloo) change together
at the scheduled epoch; a live freeze change is refused on each of them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from desktop_tl.core.config import RunConfig

from test_torchrun import check_launch, free_port, places, run, run_file, summary  # noqa: F401

WORKER = Path(__file__).with_name("live_freeze_worker.py")


def test_a_schedule_applies_on_both_processes_and_a_live_change_on_neither(places):  # noqa: F811
    tmp_path, env = places
    toml = run_file(tmp_path, epochs=2)
    config = RunConfig.load(toml)
    config.freeze.schedule = [{"epoch": 2, "changes": {"backbone.top": True}}]
    config.save(toml)
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(WORKER),
        str(toml),
        str(out),
    ]
    check_launch(run(command, env, tmp_path))

    log = (out / "run.log").read_text()
    assert log.count("scheduled freeze change at epoch 2: backbone.top trainable") == 1, log
    assert (
        "live freeze changes do not apply to a distributed run; put them in the run file's freeze.schedule"
        in log
    )
    finished = summary(out)
    assert finished["status"] == "completed" and finished["processes"] == 2
    assert [(c["epoch"], c["changes"]) for c in finished["freeze_changes"]] == [(2, {"backbone.top": True})]
    meta = json.loads((out / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["freeze_map"]["backbone.top"] is True and meta["freeze_map"]["backbone.blocks"] is False
    # DDP averaged the newly trainable stage's gradients too: every step's are equal.
    digests = {Path(f"{out}.rank{rank}.txt").read_text() for rank in (0, 1)}
    assert len(digests) == 1
