"""The dataset browser's thumbnail grid: a list view in icon mode whose tile delegate paints
each image's thumbnail with its name, class and split, and dims a left-out image under a
"left out" band.

No widget per image and tiles of one size, so 10,000 images open at once; thumbnails are
read only for the tiles painted, off the GUI thread
(:class:`~desktop_tl.gui.thumbnails.ThumbnailLoader`).
"""

from __future__ import annotations

import os

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from .dataset_items import ITEM_ROLE, SUBSET_NAMES, BrowserItem, DatasetModel
from .icons import mix, semantic_colour
from .thumbnail_tiles import Caption, ThumbnailGridView, ThumbnailTileDelegate, TileContent, tile_size
from .thumbnails import ThumbnailLoader

THUMBNAIL_SIDE = 112


class ImageTileDelegate(ThumbnailTileDelegate):
    """A thumbnail with its file name, class and split under it; left-out images dimmed
    under a "left out" band."""

    def __init__(self, loader: ThumbnailLoader, model: DatasetModel, parent: QWidget) -> None:
        super().__init__(loader, THUMBNAIL_SIDE, parent)
        self._model = model

    def tile_content(self, index: QModelIndex, palette: QPalette) -> TileContent | None:
        item: BrowserItem | None = index.data(ITEM_ROLE)
        if item is None:
            return None
        state = self._model.state_of(item)
        left_out = state == "excluded"
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        warning = semantic_colour("warning", palette)
        name = os.path.basename(item.path)
        detail = f"{item.class_name} · {SUBSET_NAMES.get(state, state)}"
        return TileContent(
            item.path,
            [
                Caption(name, mix(base, text, 0.6) if left_out else text, Qt.TextElideMode.ElideMiddle),
                Caption(detail, warning if left_out else semantic_colour("muted", palette)),
            ],
            dimmed=left_out,
            band=("⊘ left out", warning) if left_out else None,
        )


class ImageGrid(ThumbnailGridView):
    """The thumbnail grid: static tiles of one size, so Qt lays out 10,000 without asking
    each for its size, and paints (and so reads thumbnails for) only the visible ones."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setGridSize(tile_size(THUMBNAIL_SIDE, self.fontMetrics().height()))
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionRectVisible(True)
        self.setMouseTracking(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    def visible_capacity(self) -> int:
        """How many tiles the viewport shows at most (rows partly in view included)."""
        grid = self.gridSize()
        area = self.viewport().size()
        columns = max(1, area.width() // max(1, grid.width()))
        rows = -(-area.height() // max(1, grid.height())) + 1
        return columns * rows
