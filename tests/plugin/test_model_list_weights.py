"""The window's model list marks the models whose weights are on this machine, can show
only those, and picks one of them when the provider changes (not the first model)."""

from __future__ import annotations

from helpers_weights import random_state, save_state
from desktop_tl.gui.model_panel import ModelPanel
from desktop_tl.plugin.manager import get_host

RESNET18_COPY = "resnet18-f37072fd.safetensors"


def panel_for(qtbot) -> ModelPanel:
    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.set_host(get_host())
    return panel


def choose_provider(panel: ModelPanel, provider_id: str) -> None:
    index = panel.provider_combo.findData(provider_id)
    assert index >= 0
    if panel.provider_combo.currentIndex() == index:  # make it a change
        panel.provider_combo.setCurrentIndex(panel.provider_combo.findData("efficientnet_lite"))
    panel.provider_combo.setCurrentIndex(index)


def test_changing_provider_selects_a_model_that_has_weights(places, qtbot):
    save_state(random_state(), places["weights"] / RESNET18_COPY)
    panel = panel_for(qtbot)
    choose_provider(panel, "torchvision")
    assert panel.models_with_weights() == ["resnet18"]
    assert panel.model_name() == "resnet18"  # not alexnet, the first in the list
    assert panel.weights_status.available
    row = panel.listed_models().index("resnet18")
    assert panel._model_items.item(row).font().bold()
    assert not panel._model_items.item(0).font().bold()  # alexnet: no weights here
    panel.cancel()


def test_the_filter_lists_only_models_with_weights(places, qtbot):
    save_state(random_state(), places["weights"] / RESNET18_COPY)
    panel = panel_for(qtbot)
    choose_provider(panel, "torchvision")
    assert len(panel.listed_models()) > 50
    panel.with_weights_check.setChecked(True)
    assert panel.listed_models() == ["resnet18"]
    panel.with_weights_check.setChecked(False)
    assert "alexnet" in panel.listed_models()
    panel.cancel()


def test_without_any_weights_the_first_model_is_selected_and_marked_missing(places, qtbot):
    panel = panel_for(qtbot)
    choose_provider(panel, "torchvision")
    assert panel.models_with_weights() == []
    assert panel.model_name() == panel.listed_models()[0]
    assert panel.weights_status is not None and not panel.weights_status.available
    panel.cancel()
