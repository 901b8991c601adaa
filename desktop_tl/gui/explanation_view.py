"""Where the model looked: an image with a Grad-CAM heat map over it, one class at a time.

:class:`ExplainedImage` shows an image large and, on demand, the map for one of a few
classes (the predicted and the true class in the evaluation gallery, the top classes in
the prediction list), with a caption naming the class and a colour legend. Maps are
computed on a :class:`~desktop_tl.gui.background.JobQueue` by explanation_maps, over a
private copy of the model, so the predictor's own model goes on serving predictions on
its worker meanwhile. A backbone without a feature map, or an image gone since it was
listed, shows the reason in place of the map. :class:`ExplanationDialog` is the
prediction list's enlarged view.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QLinearGradient, QPainter, QPaintEvent, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..errors import UserError
from .background import JobFailure, JobQueue
from .explanation_maps import SHOWN_SIDE, ExplainerCache, ShownExplanation, compute_explanations
from .icons import semantic_colour
from .thumbnails import ThumbnailLoader

#: Maps kept per view (class and image), so toggling back and forth costs nothing.
RESULT_CACHE = 48
#: Stops of matplotlib's "inferno", the colour map Explanation.overlay blends with.
INFERNO = ("#000004", "#420a68", "#932667", "#dd513a", "#fca50a", "#fcffa4")


class HeatLegend(QWidget):
    """The colour scale of the map: dark where the class found little, bright where most."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(self.fontMetrics().height() + 4)
        self.setMinimumWidth(260)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(320, self.fontMetrics().height() + 4)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = self.fontMetrics()
        left, right = "little evidence", "most evidence"
        left_w, right_w = metrics.horizontalAdvance(left) + 8, metrics.horizontalAdvance(right) + 8
        bar = QRectF(left_w, 3, max(40, self.width() - left_w - right_w), self.height() - 6)
        gradient = QLinearGradient(bar.topLeft(), bar.topRight())
        for i, colour in enumerate(INFERNO):
            gradient.setColorAt(i / (len(INFERNO) - 1), QColor(colour))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(gradient)
        painter.drawRoundedRect(bar, 3, 3)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            QRectF(0, 0, left_w - 4, self.height()),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            left,
        )
        painter.drawText(
            QRectF(bar.right() + 4, 0, right_w, self.height()),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            right,
        )
        painter.end()


class ExplainedImage(QWidget):
    """An image, large, and a row of toggles: the image alone, or where the model looked
    for each of the given classes.

    ``set_predictor(predictor, label)`` chooses the model (None: the toggles say how to
    get one); ``show_image(path, choices)`` shows an image with ``choices`` as
    ``(role, class name)`` pairs ("predicted", "dog"); ``show_map(i)`` picks the image (0)
    or a class's map (1..).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._predictor: Any = None
        self._model_label = ""
        self._path = ""
        self._choices: list[tuple[str, str]] = []
        self._selected = 0
        self._pixmap: QPixmap | None = None
        self._shown: ShownExplanation | None = None
        self._message = ""
        self._working = False  # the map shown is being computed
        self._results: dict[tuple[str, str], ShownExplanation] = {}
        self._errors: dict[tuple[str, str], tuple[str, str]] = {}  # (message, details)
        self._asked: set[tuple[str, str]] = set()
        self._cache = ExplainerCache()
        self._jobs = JobQueue(self)
        self._loader = ThumbnailLoader(SHOWN_SIDE, self)
        self._loader.ready.connect(self._on_image_loaded)
        self._loader.failed.connect(self._on_image_failed)

        self.image_label = QLabel(self)
        self.image_label.setObjectName("previewImage")
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(240, 240)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image_label.setWordWrap(True)

        self.toggle_title = QLabel("Where the model looked:", self)
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self._group.idClicked.connect(self.show_map)
        self._toggle_row = QHBoxLayout()
        self._toggle_row.setContentsMargins(0, 0, 0, 0)
        self._toggle_row.addStretch(1)
        self._toggle_row.addWidget(self.toggle_title)
        self._buttons: list[QPushButton] = []
        self._toggle_row.addStretch(1)

        self.legend = HeatLegend(self)
        self.map_caption = QLabel(self)
        self.map_caption.setObjectName("explanationCaption")
        self.map_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.map_caption.setWordWrap(True)
        self.map_caption.setTextFormat(Qt.TextFormat.RichText)
        legend_row = QHBoxLayout()
        legend_row.addStretch(1)
        legend_row.addWidget(self.legend, 2)
        legend_row.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image_label, 1)
        layout.addWidget(self.map_caption)
        layout.addLayout(legend_row)
        layout.addLayout(self._toggle_row)
        self._show_caption()

    # ------------------------------------------------------------------ public API

    def set_predictor(self, predictor: Any, label: str = "") -> None:
        """Explain with ``predictor`` (a :class:`~desktop_tl.core.predict.Predictor`) from
        now on; ``label`` says which model it is, in the caption."""
        if predictor is self._predictor and label == self._model_label:
            return
        self._jobs.cancel_pending()
        self._predictor, self._model_label = predictor, label
        self._cache = ExplainerCache()  # the old model's copy goes with the old model
        self._results.clear()
        self._errors.clear()
        self._asked.clear()
        self._update_buttons()
        self.show_map(self._selected)

    def show_image(self, path: str, choices: Sequence[tuple[str, str]], selected: int = 0) -> None:
        self._jobs.cancel_pending()
        self._asked.clear()
        self._errors.clear()  # a file put back, or a retry, gets a fresh try
        self._path = os.fspath(path)
        if not os.path.exists(self._path):  # deleted since its maps were made: say so
            self._results = {k: v for k, v in self._results.items() if k[0] != self._path}
        self._choices = [(str(role), str(name)) for role, name in choices]
        self._rebuild_buttons()
        self._pixmap = None
        image = self._loader.image(self._path)
        if image is not None:
            self._pixmap = QPixmap.fromImage(image)
        elif self._loader.error(self._path) is None:
            self._loader.request(self._path)
        self.show_map(selected)

    def show_map(self, index: int) -> None:
        """0: the image alone; 1..n: where the model looked for the n-th choice."""
        self._selected = max(0, min(int(index), len(self._choices)))
        if self._selected and self._predictor is None:
            self._selected = 0
        button = self._group.button(self._selected)
        if button is not None and not button.isChecked():
            button.setChecked(True)
        self._shown, self._message, self._working = None, "", False
        if self._selected == 0:
            self._show_plain()
        else:
            _role, name = self._choices[self._selected - 1]
            key = (self._path, name)
            if key in self._results:
                self._shown = self._results[key]
            elif key in self._errors:
                self._message, details = self._errors[key]
                self.image_label.setToolTip(details)
            else:
                self._message, self._working = "Working out where the model looked…", True
                self._request(name)
            self._fit_pixmap()
        self._show_caption()

    def selected_index(self) -> int:
        """0 while the image alone is shown, else the chosen class's place (1..)."""
        return self._selected

    def shown_class(self) -> str:
        """The class whose map is shown ("" for the image alone)."""
        return self._choices[self._selected - 1][1] if self._selected else ""

    def shown_explanation(self) -> ShownExplanation | None:
        return self._shown

    def message(self) -> str:
        """What is shown in place of the image or map ("" while one is shown)."""
        return self._message

    def has_image(self) -> bool:
        return self._pixmap is not None

    @property
    def busy(self) -> bool:
        return self._jobs.busy or self._loader.busy

    def choice_buttons(self) -> list[QPushButton]:
        """The toggles: the image alone first, then one per class."""
        return list(self._buttons)

    # ------------------------------------------------------------------ work

    def _request(self, wanted: str) -> None:
        if self._predictor is None:
            return
        names = [name for _role, name in self._choices if (self._path, name) not in self._results]
        if wanted not in names:
            names.append(wanted)
        fresh = [name for name in names if (self._path, name) not in self._asked]
        if not fresh:
            return  # already on its way
        self._asked.update((self._path, name) for name in fresh)
        path, predictor = self._path, self._predictor
        self._jobs.submit(
            compute_explanations,
            self._cache,
            predictor,
            path,
            fresh,
            on_result=lambda shown, p=predictor: self._on_computed(p, shown),
            on_error=lambda failure, p=predictor, f=path, n=fresh: self._on_failed(p, f, n, failure),
        )

    def _on_computed(self, predictor: Any, shown: list[ShownExplanation]) -> None:
        if predictor is not self._predictor:
            return
        for explanation in shown:
            self._results[(explanation.path, explanation.class_name)] = explanation
        while len(self._results) > RESULT_CACHE:
            self._results.pop(next(iter(self._results)))
        if self._selected and any(e.path == self._path for e in shown):
            self.show_map(self._selected)

    def _on_failed(self, predictor: Any, path: str, names: list[str], failure: JobFailure) -> None:
        if predictor is not self._predictor:
            return
        if isinstance(failure.exception, UserError):
            message, details = str(failure.exception), ""
        else:
            message, details = f"The heat map could not be computed: {failure}", failure.traceback
        for name in names:
            self._errors[(path, name)] = (message, details)
            self._asked.discard((path, name))
        if path == self._path and self._selected:
            self.show_map(self._selected)

    # ------------------------------------------------------------------ showing

    def _rebuild_buttons(self) -> None:
        for button in self._buttons:
            self._group.removeButton(button)
            self._toggle_row.removeWidget(button)
            button.deleteLater()
        self._buttons = []
        labels = ["Image only"] + [f"{role}: {name}" for role, name in self._choices]
        for i, text in enumerate(labels):
            button = QPushButton(text, self)
            button.setCheckable(True)
            button.setObjectName("explanationToggle")
            self._group.addButton(button, i)
            self._toggle_row.insertWidget(self._toggle_row.count() - 1, button)
            self._buttons.append(button)
        self._update_buttons()

    def _update_buttons(self) -> None:
        for i, button in enumerate(self._buttons):
            if i == 0:
                button.setToolTip("The image as it is")
                continue
            button.setEnabled(self._predictor is not None)
            role, name = self._choices[i - 1]
            button.setToolTip(
                f"Grad-CAM heat map: the parts of the image that raised the score of {name} "
                f"(the {role} class) most"
                if self._predictor is not None
                else "No model to explain with: train one, or load a saved run in the Prediction tab"
            )

    def _show_plain(self) -> None:
        self.image_label.setToolTip("")
        error = self._loader.error(self._path) if self._path else None
        if self._pixmap is None:
            self._message = (
                f"This image cannot be shown:\n{error}" if error else "Loading…" if self._path else ""
            )
        self._fit_pixmap()

    def _show_caption(self) -> None:
        muted = semantic_colour("muted", self.palette()).name()
        shown = self._shown
        self.legend.setVisible(shown is not None)
        if shown is not None:
            role = self._choices[self._selected - 1][0]
            model = f" · model: {html.escape(self._model_label)}" if self._model_label else ""
            self.map_caption.setText(
                f"Where the model looked for <b>{html.escape(shown.class_name)}</b> "
                f"({html.escape(role)} class; the model gives it p={shown.probability:.2f})"
                f'<br><span style="color:{muted}">Grad-CAM on {html.escape(shown.layer)}, over the centre '
                f"square the model sees{model}</span>"
            )
        elif self._selected and self._message and not self._working:
            bad = semantic_colour("bad", self.palette()).name()
            self.map_caption.setText(
                f'<span style="color:{bad}">No heat map for {html.escape(self.shown_class())}</span>'
            )
        elif self._predictor is None and self._choices:
            self.map_caption.setText(
                f'<span style="color:{muted}">No model to show where it looked: '
                "train one, or load a saved run in the Prediction tab.</span>"
            )
        else:
            self.map_caption.setText("")
        self.map_caption.setVisible(bool(self.map_caption.text()))

    def _on_image_loaded(self, path: str) -> None:
        image = self._loader.image(path)
        if path == self._path and image is not None:
            self._pixmap = QPixmap.fromImage(image)
            if self._selected == 0:
                self.show_map(0)

    def _on_image_failed(self, path: str, _reason: str) -> None:
        if path == self._path and self._selected == 0:
            self.show_map(0)

    def _fit_pixmap(self) -> None:
        source = (
            QPixmap.fromImage(self._shown.overlay)
            if self._shown is not None
            else (self._pixmap if self._selected == 0 else None)
        )
        if source is None or self._message:
            self.image_label.setPixmap(QPixmap())
            self.image_label.setText(self._message)
            return
        self.image_label.setText("")
        self.image_label.setPixmap(fitted_pixmap(source, self.image_label.size()))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_pixmap()


def fitted_pixmap(source: QPixmap, area: QSize) -> QPixmap:
    """``source`` as an enlarged view shows it in ``area``: shrunk smoothly to fit, or, when
    small, enlarged by a whole factor with its pixels kept sharp (not a postage stamp)."""
    if source.width() > area.width() or source.height() > area.height():
        return source.scaled(
            area, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    if source.width() * 2 <= area.width() and source.height() * 2 <= area.height():
        factor = min(area.width() // source.width(), area.height() // source.height())
        return source.scaled(
            source.size() * factor,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.FastTransformation,
        )
    return source


def preview_labels(parent: QWidget) -> tuple[QLabel, QLabel]:
    """The enlarged views' caption (centred, a little larger) and selectable path line."""
    caption = QLabel(parent)
    caption.setObjectName("previewCaption")
    caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
    caption_font = QFont(caption.font())
    caption_font.setPointSizeF(caption_font.pointSizeF() * 1.15)
    caption.setFont(caption_font)
    path_label = QLabel(parent)
    path_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    path_label.setWordWrap(True)
    return caption, path_label


class ExplanationDialog(QDialog):
    """One predicted image, large, with where the model looked for its top classes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Where the model looked")
        self.resize(760, 700)
        self.view = ExplainedImage(self)
        self.caption, self.path_label = preview_labels(self)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        close_button = QPushButton("Close", self)
        close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)

    def show_prediction(
        self, predictor: Any, model_label: str, path: str, top: Sequence[tuple[str, float]]
    ) -> None:
        """``top``: the (class, probability) pairs the list shows, best first; the map for
        the first is shown at once."""
        from .prediction_rows import format_probability

        self.view.set_predictor(predictor, model_label)
        roles = ["top", "2nd", "3rd"]
        choices = [(roles[i], name) for i, (name, _p) in enumerate(list(top)[:3])]
        self.caption.setText(
            "Predicted: "
            + " · ".join(
                f"{'<b>' if i == 0 else ''}{html.escape(name)} {format_probability(p)}{'</b>' if i == 0 else ''}"
                for i, (name, p) in enumerate(list(top)[:3])
            )
        )
        self.path_label.setText(os.path.normpath(path))
        self.view.show_image(path, choices, selected=1 if choices else 0)
