"""One dataset image enlarged (:class:`ImageDialog`), opened from the dataset browser: its
class and split, arrows to step through the images the browser shows, and a button to
leave it out of training or bring it back.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap, QResizeEvent
from PySide6.QtWidgets import QDialog, QLabel, QPushButton, QSizePolicy, QVBoxLayout

from .dataset_items import SUBSET_NAMES, BrowserItem
from .explanation_view import SHOWN_SIDE, fitted_pixmap, preview_labels
from .icons import semantic_colour
from .image_stepper import ImageStepper
from .thumbnails import ThumbnailLoader

if TYPE_CHECKING:
    from .dataset_browser import DatasetBrowser


class ImageDialog(QDialog):
    """One dataset image, large, with its class and split; arrows step through the images
    the browser shows, and the image can be left out or brought back from here."""

    def __init__(self, browser: DatasetBrowser) -> None:
        super().__init__(browser)
        self.browser = browser
        self.setWindowTitle("Dataset image")
        self.resize(720, 660)
        self._items: list[BrowserItem] = []
        self._index = 0
        self._pixmap: QPixmap | None = None
        self._loader = ThumbnailLoader(SHOWN_SIDE, self)
        self._loader.ready.connect(self.on_thumbnail)
        self._loader.failed.connect(lambda path, _reason: self.on_thumbnail(path))

        self.caption, self.path_label = preview_labels(self)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.image_label = QLabel(self)
        self.image_label.setObjectName("previewImage")
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(200, 200)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image_label.setWordWrap(True)

        self.stepper = ImageStepper(self, lambda step: self.show_index(self._index + step))
        self.previous_button, self.next_button = self.stepper.previous_button, self.stepper.next_button
        self.position_label = self.stepper.position_label
        self.toggle_button = QPushButton("Leave out of training", self)
        close_button = QPushButton("Close", self)
        self.toggle_button.clicked.connect(self._toggle)
        close_button.clicked.connect(self.close)
        self.stepper.add_buttons(self.toggle_button, close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.image_label, 1)
        layout.addWidget(self.path_label)
        layout.addLayout(self.stepper.row)

    def show_items(self, items: list[BrowserItem], index: int) -> None:
        self._items = list(items)
        self.show_index(index)

    def current_item(self) -> BrowserItem | None:
        return self._items[self._index] if self._items else None

    def has_image(self) -> bool:
        return self._pixmap is not None

    def show_index(self, index: int) -> None:
        if not self._items:
            return
        self._index = max(0, min(index, len(self._items) - 1))
        item = self._items[self._index]
        self._pixmap = None
        image = self._loader.image(item.path)
        if image is not None:
            self._pixmap = QPixmap.fromImage(image)
        elif self._loader.error(item.path) is None:
            self._loader.request(item.path)
        self.path_label.setText(os.path.normpath(item.path))
        self.stepper.show_position(self._index, len(self._items))
        self.refresh()

    def refresh(self) -> None:
        """Caption and button for the image's state now (left out, brought back)."""
        item = self.current_item()
        if item is None:
            return
        state = self.browser.model.state_of(item)
        shown = SUBSET_NAMES.get(state, state)
        if state == "excluded":
            warning = semantic_colour("warning", self.palette()).name()
            shown = f'<span style="color:{warning}">left out of training by you</span>'
        self.caption.setText(f"<b>{html.escape(item.class_name)}</b> · {shown}")
        self.toggle_button.setText("Bring back" if state == "excluded" else "Leave out of training")
        self.toggle_button.setEnabled(self.browser.can_edit())
        self._fit_pixmap()

    def on_thumbnail(self, path: str) -> None:
        item = self.current_item()
        if item is None or item.path != path:
            return
        image = self._loader.image(path)
        if image is not None:
            self._pixmap = QPixmap.fromImage(image)
        self._fit_pixmap()

    def _toggle(self) -> None:
        item = self.current_item()
        if item is not None:
            self.browser.set_left_out([item], not self.browser.model.is_left_out(item))
            self.refresh()

    def _fit_pixmap(self) -> None:
        item = self.current_item()
        if self._pixmap is None:
            self.image_label.setPixmap(QPixmap())
            error = self._loader.error(item.path) if item is not None else None
            self.image_label.setText(f"This image cannot be shown:\n{error}" if error else "Loading…")
            return
        self.image_label.setText("")
        self.image_label.setPixmap(fitted_pixmap(self._pixmap, self.image_label.size()))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_pixmap()
