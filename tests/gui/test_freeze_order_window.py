"""The layer tree shows what the engine trains, however fast layers are ticked during a
run, and Start stays disabled, with the reason, for a model that cannot be built."""

from __future__ import annotations

import copy
import json
import random
import sys
from pathlib import Path

from PySide6.QtCore import Qt

from window_helpers import configure_fast_run

from plugin.fakedist import GOOD_HEADER, FakeSite

RUN_TIMEOUT_MS = 120_000

_CHECK = {
    "trainable": Qt.CheckState.Checked,
    "frozen": Qt.CheckState.Unchecked,
    "partial": Qt.CheckState.PartiallyChecked,
}


def test_tree_matches_the_checkpoint_after_quick_toggles_during_a_run(qtbot, window, tiny_dataset):
    from desktop_tl.core.layers import apply_freeze_map, layer_tree, trainable_state

    configure_fast_run(window, qtbot, tiny_dataset, epochs=4)
    layers = window.layer_panel
    # Backbone layers only: a run with nothing left to train is another matter.
    names = [
        name for name in layers._items if name.startswith("backbone") and layers.item_for(name).isCheckable()
    ]
    rng = random.Random(3)
    assert window.start_training()
    # Clicks start at once: a run on a fast machine can be over before its first batch
    # reaches the plots, and clicks made while it prepares are commands all the same.
    toggles = 0
    with qtbot.waitSignal(window.training.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        while window.run_state == "running" and toggles < 150:
            for _ in range(rng.randint(1, 6)):  # several clicks between two batches
                layers.set_trainable(rng.choice(names), rng.random() < 0.5)
                toggles += 1
            qtbot.wait(rng.randint(0, 40))
    event = blocker.args[0]
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    assert event.status == "completed", event.reason
    assert toggles >= 10

    saved = json.loads(Path(event.run_dir, "checkpoints", "last", "meta.json").read_text())
    shown = window.model_panel.built.model
    assert trainable_state(shown) == saved["freeze_map"]
    # Every check box and count in the tree is the checkpoint's.
    trained = copy.deepcopy(shown)
    apply_freeze_map(trained, {"": False})
    apply_freeze_map(trained, saved["freeze_map"])
    expected = layer_tree(trained)
    for node in expected.walk():
        if node.name in layers._items and node.state in _CHECK:
            assert layers.check_state(node.name) == _CHECK[node.state], node.name
            assert "applying" not in layers._items[node.name][3].text()
    assert f"Trainable: {expected.trainable_params:,} of" in layers.counts_label.text()
    # The settings of the next run reproduce it too.
    fresh = copy.deepcopy(shown)
    from desktop_tl.core.layers import apply_freeze

    apply_freeze(fresh, window.config.freeze.preset, window.config.freeze.overrides)
    assert trainable_state(fresh) == saved["freeze_map"]


BROKEN_BACKBONE = (
    GOOD_HEADER
    + '''
def _create(model_name, weights):
    raise RuntimeError("the lab licence server is unreachable")

@hookimpl
def dtl_backbone_providers():
    return [BackboneProvider(
        id="licensed", display_name="Licensed nets", list_models=lambda: ["net1"],
        create=_create, weights_status=lambda name: WeightsStatus(True, "package"))]
'''
)


def test_start_is_disabled_with_the_reason_when_the_model_cannot_be_built(
    qtbot, tmp_path, monkeypatch, settings, runs_dir, tiny_dataset
):
    from desktop_tl.core.config import RunConfig
    from desktop_tl.gui.background import cancel_and_wait_all
    from desktop_tl.gui.main_window import MainWindow
    from desktop_tl.plugin.manager import PluginHost

    site_root = tmp_path / "site"
    site_root.mkdir()
    monkeypatch.syspath_prepend(str(site_root))
    site = FakeSite(site_root)
    site.add("dtl-licensed", {"dtl_licensed_backbone": BROKEN_BACKBONE})
    host = PluginHost(path=[str(site_root), *sys.path])  # the shipped plugins as well
    host.load()
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    try:
        window.set_backend(
            host, {"available": {"auto": True, "cpu": True, "cuda": False, "mps": False}, "auto": "cpu"}
        )
        config = RunConfig()
        config.data.path = str(tiny_dataset)
        config.model.backbone = "licensed:net1"
        config.model.weights = "none"
        window.load_config(config)
        qtbot.waitUntil(
            lambda: (
                "could not be built" in window.layer_panel.placeholder.text()
                and window.data_panel.prepared is not None
                and not window.model_panel.busy
            ),
            timeout=60_000,
        )

        start = window.training_panel.start_button
        assert not start.isEnabled()
        assert not window.start_action.isEnabled()
        assert "could not be built" in start.toolTip()
        assert "licence server is unreachable" in start.toolTip()
        assert "licence server is unreachable" in window.training_panel.status_label.text()
        assert "could not be built" in window.state_label.text()
        assert not window.start_training()
        assert window.training.session is None

        # A backbone that builds makes Start possible again.
        config.model.backbone = "torchvision:mobilenet_v3_small"
        window.load_config(config)
        qtbot.waitUntil(window.is_ready, timeout=60_000)
        assert start.isEnabled()
        assert "not yet" not in start.toolTip()
    finally:
        cancel_and_wait_all(30_000)
        site.forget_modules()
