"""The freeze settings as the layer tree edits them, on the model the tree shows.

Before a run a tick or a preset changes the project's freeze settings
(``window.config.freeze``) and the tree's model. While a run goes the change is also sent
to the engine (:meth:`~desktop_tl.gui.training_controller.TrainingController.send_freeze`),
and the tree shows the state the engine reports it applied, with the changes still on
their way marked as applying. torch is imported only inside the calls (through
``core.layers``), after the backend has loaded.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from PySide6.QtCore import QObject

from ..errors import UserError
from .layer_tree import freeze_changes


class FreezeEditor(QObject):
    """Freeze edits for ``window`` (a :class:`~desktop_tl.gui.main_window.MainWindow`)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self._window = window

    def _shown_model(self) -> Any:
        """The model the layer tree shows (None while none is built)."""
        built = self._window.model_panel.built
        return built.model if built is not None else None

    def show_model(self, built: Any) -> None:
        """A model has been built: freeze it as the project says and show its tree."""
        from ..core.layers import apply_freeze, backbone_stage_names, layer_tree

        window = self._window
        freeze = window.config.freeze
        try:
            apply_freeze(built.model, freeze.preset, freeze.overrides)
        except UserError as exc:
            # Layers named for another backbone: keep the preset, drop the hand edits.
            window.log("warning", f"freeze overrides dropped: {exc}")
            freeze.overrides = {}
            apply_freeze(built.model, freeze.preset, {})
        window.layer_panel.set_stage_names(backbone_stage_names(built.model))
        window.layer_panel.set_tree(layer_tree(built.model))
        window.layer_panel.set_preset(freeze.preset, freeze.overrides)

    def toggle_layer(self, name: str, trainable: bool) -> None:
        """A tick in the tree: ``name`` and everything under it train (or not)."""
        model = self._shown_model()
        if model is None:
            return
        from ..core.layers import apply_freeze, apply_freeze_map, layer_tree

        window = self._window
        freeze_before = copy.deepcopy(window.config.freeze)
        freeze = window.config.freeze
        overrides = {k: v for k, v in freeze.overrides.items() if k != name and not k.startswith(name + ".")}
        overrides[name] = trainable
        freeze.overrides = overrides
        if window.training.is_active():
            apply_freeze_map(model, {name: trainable})
            window.training.send_freeze({name: trainable}, freeze_before)
        else:
            apply_freeze(model, freeze.preset, freeze.overrides)
            window.project.mark_modified()
        window.layer_panel.update_states(layer_tree(model))
        window.layer_panel.set_preset(freeze.preset, freeze.overrides)

    def choose_preset(self, preset: str) -> None:
        """A preset chosen ("head-only", "last:N", "none"): it replaces the hand edits."""
        window = self._window
        model = self._shown_model()
        freeze_before = copy.deepcopy(window.config.freeze)
        freeze = window.config.freeze
        freeze.preset, freeze.overrides = preset, {}
        window.layer_panel.set_preset(preset, {})
        if model is None:
            return
        from ..core.layers import apply_freeze, layer_tree

        before = layer_tree(model)
        apply_freeze(model, preset, {})
        after = layer_tree(model)
        if window.training.is_active():
            changes = freeze_changes(before, after)
            if changes:
                window.training.send_freeze(changes, freeze_before)
        else:
            window.project.mark_modified()
        window.layer_panel.update_states(after)

    def show_applied(self, state: dict[str, bool], pending: Iterable[dict[str, bool]] = ()) -> None:
        """Show the trainable state the engine reported, with the changes sent since
        then (``pending``) on top, marked as applying."""
        model = self._shown_model()
        if model is None:
            return
        from ..core.layers import apply_freeze_map, layer_tree

        apply_freeze_map(model, {"": False})  # the reported state names every parameter
        apply_freeze_map(model, state)
        names: set[str] = set()
        for changes in pending:
            apply_freeze_map(model, changes)
            names.update(changes)
        layers = self._window.layer_panel
        layers.clear_pending()
        layers.set_pending(names)
        layers.update_states(layer_tree(model))

    def show_trained(self, freeze: Any, state: dict[str, bool] | None) -> None:
        """After a run: show the freeze settings ``freeze`` and what the run trained, the
        engine's last reported ``state`` (None when it reported none, so it trained
        ``freeze`` as it started)."""
        model = self._shown_model()
        if model is not None:
            if state is not None:
                self.show_applied(state)
            else:
                from ..core.layers import apply_freeze, layer_tree

                apply_freeze(model, freeze.preset, freeze.overrides)
                self._window.layer_panel.update_states(layer_tree(model))
        self._window.layer_panel.set_preset(freeze.preset, freeze.overrides)
