"""Live training curves: batch loss (raw and smoothed), loss per epoch, validation accuracy.

Curves are created once. Data is appended to arrays as events arrive and the curves are
redrawn by a ~100 ms timer only when something changed, never once per batch, so a fast
run cannot flood the GUI thread. Every plot uses epochs on its x axis (a batch at step s
sits at (s + 1) / batches_per_epoch), so freeze markers line up across the three plots.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from .layer_tree import layer_label

REDRAW_INTERVAL_MS = 100
#: The least height of each plot when the three are stacked in a narrow column.
STACKED_PLOT_HEIGHT = 170
EMA_WEIGHT = 0.9  # smoothing of the batch loss; bias-corrected like TensorBoard's

BLUE = QColor(31, 119, 180)
ORANGE = QColor(230, 115, 0)
GREEN = QColor(44, 160, 44)
MARKER = QColor(150, 60, 200)

#: Where a freeze marker's label sits on its line (0 bottom, 1 top of the plot), below
#: the legend; labels of markers close together step down by MARKER_LABEL_STEP each.
MARKER_LABEL_HEIGHT = 0.7
MARKER_LABEL_STEP = 0.13
MARKER_LABEL_LEVELS = 4
#: Markers closer than this share of the x axis stack their labels instead of overlapping.
MARKER_NEAR_SHARE = 0.2
#: Longer marker labels are shortened on the plot; the full text is on hover.
MARKER_LABEL_CHARS = 26

#: Grid lines for major and minor ticks only. pyqtgraph's third, finest level adds dozens
#: of faint lines per axis that cost most of a redraw (about 20 ms of 25 for the three
#: plots on a slow CPU) while adding little to the reading.
GRID_TICK_LEVEL = 1


class _GrowingSeries:
    """x/y arrays that grow by doubling, so appending stays cheap and setData gets views."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._x = np.empty(256)
        self._y = np.empty(256)
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == len(self._x):
            self._x = np.concatenate([self._x, np.empty(len(self._x))])
            self._y = np.concatenate([self._y, np.empty(len(self._y))])
        self._x[self.size] = x
        self._y[self.size] = y
        self.size += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.size]


class TrainingPlots(QWidget):
    """Three live plots plus a one-line summary of the latest epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.redraw_count = 0
        self.batches_received = 0
        self.freeze_markers: list[tuple[float, str]] = []
        self._marker_levels: list[int] = []  # each marker's label row, 0 the top one
        self._marker_items: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        self._dirty = False
        self._batches_changed = False  # the batch curves need new data
        self._epochs_changed = False  # the per-epoch curves need new data
        self._batches_per_epoch = 1
        self._ema = 0.0
        self._ema_n = 0
        self._best_acc: float | None = None
        self._planned_epochs = 0

        self.summary = QLabel("Curves appear here once training starts.")
        self.summary.setObjectName("plotSummary")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(260)
        self.canvas.ci.setSpacing(12)

        self.batch_plot = self.canvas.addPlot(row=0, col=0, colspan=2)
        self.epoch_loss_plot = self.canvas.addPlot(row=1, col=0)
        self.acc_plot = self.canvas.addPlot(row=1, col=1)
        self.plots = (self.batch_plot, self.epoch_loss_plot, self.acc_plot)

        self.batch_plot.setTitle("Training loss per batch")
        self.epoch_loss_plot.setTitle("Loss per epoch")
        self.acc_plot.setTitle("Validation accuracy")
        for plot, ylabel in zip(self.plots, ("loss", "loss", "accuracy (%)")):
            plot.setLabel("bottom", "epoch")
            plot.setLabel("left", ylabel)
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
            for name in ("left", "bottom"):
                plot.getAxis(name).enableAutoSIPrefix(False)  # "loss (x0.001)" reads badly
                plot.getAxis(name).setStyle(maxTickLevel=GRID_TICK_LEVEL)
        self.acc_plot.setYRange(0, 100, padding=0.05)
        self.acc_plot.enableAutoRange(axis="y", enable=False)

        # One row, so that freeze markers' labels fit below it.
        self.batch_legend = self.batch_plot.addLegend(offset=(-10, 8), colCount=2)
        self.epoch_legend = self.epoch_loss_plot.addLegend(offset=(-10, 8))
        self.acc_legend = self.acc_plot.addLegend(offset=(-10, -8))

        raw_colour = QColor(BLUE)
        raw_colour.setAlpha(70)
        self.raw_curve = self.batch_plot.plot(name="raw", pen=pg.mkPen(raw_colour, width=1))
        self.smooth_curve = self.batch_plot.plot(name="smoothed (EMA 0.9)", pen=pg.mkPen(BLUE, width=2))
        for curve in (self.raw_curve, self.smooth_curve):
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
        symbol = dict(symbol="o", symbolSize=6)
        self.train_loss_curve = self.epoch_loss_plot.plot(
            name="train", pen=pg.mkPen(BLUE, width=2), symbolBrush=BLUE, symbolPen=BLUE, **symbol
        )
        self.val_loss_curve = self.epoch_loss_plot.plot(
            name="validation", pen=pg.mkPen(ORANGE, width=2), symbolBrush=ORANGE, symbolPen=ORANGE, **symbol
        )
        self.val_acc_curve = self.acc_plot.plot(
            name="validation", pen=pg.mkPen(GREEN, width=2), symbolBrush=GREEN, symbolPen=GREEN, **symbol
        )

        self.raw = _GrowingSeries()
        self.smooth = _GrowingSeries()
        self.train_loss = _GrowingSeries()
        self.val_loss = _GrowingSeries()
        self.val_acc = _GrowingSeries()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.summary)
        layout.addWidget(self.canvas, 1)

        self._stacked = False
        # How wide the canvas must be for the two small plots side by side (axes, titles);
        # measured while they are side by side, since titles and fonts change it.
        self._side_by_side_width = 0.0

        self._apply_palette()
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_INTERVAL_MS)
        self.timer.timeout.connect(self.redraw_if_dirty)
        self.timer.start()

    # ------------------------------------------------------------ data in

    def is_empty(self) -> bool:
        """True before the first batch or epoch point of a run has arrived."""
        return self.batches_received == 0 and self.train_loss.size == 0

    def reset(self, batches_per_epoch: int = 1) -> None:
        """Forget the previous run's curves (called when a new run starts)."""
        self._batches_per_epoch = max(1, int(batches_per_epoch))
        # The axes keep the last plan until the next run's (no repaint before it starts).
        self._planned_epochs = 0
        series_all = (self.raw, self.smooth, self.train_loss, self.val_loss, self.val_acc)
        had_data = any(series.size for series in series_all) or bool(self._marker_items)
        for series in series_all:
            series.clear()
        for plot, line in self._marker_items:
            plot.removeItem(line)
        self._marker_items.clear()
        self.freeze_markers.clear()
        self._marker_levels.clear()
        self._ema = 0.0
        self._ema_n = 0
        self._best_acc = None
        self.batches_received = 0
        self.summary.setText("Waiting for the first batch…")
        # Clearing empty curves would only repaint the same empty axes.
        if had_data:
            self._dirty = self._batches_changed = self._epochs_changed = True
            # Empty curves leave the axes where the old ones were: empty them now (the
            # y axes would fit the old data again) and put the axes back to the start.
            for curve in (
                self.raw_curve,
                self.smooth_curve,
                self.train_loss_curve,
                self.val_loss_curve,
                self.val_acc_curve,
            ):
                curve.setData([], [])
            for plot in (self.batch_plot, self.epoch_loss_plot):
                plot.setYRange(0, 1)
                plot.enableAutoRange(axis="y", enable=True)

    def set_planned_epochs(self, epochs: int) -> None:
        """Fix every plot's x axis to the whole run (0 to ``epochs``): the curves fill it
        from the left as the run goes on, freeze markers stay in view, the axis never
        shows epochs before 0, and it is not redrawn at every new batch."""
        self._planned_epochs = max(1, int(epochs))
        step = max(1, math.ceil(self._planned_epochs / 8))
        for plot in self.plots:
            plot.enableAutoRange(axis="x", enable=False)
            plot.setXRange(0, self._planned_epochs, padding=0.04)
        for plot in (self.epoch_loss_plot, self.acc_plot):
            plot.getAxis("bottom").setTickSpacing(step, step)

    @property
    def planned_epochs(self) -> int:
        return self._planned_epochs

    def set_batches_per_epoch(self, batches_per_epoch: int) -> None:
        self._batches_per_epoch = max(1, int(batches_per_epoch))

    def add_batch(self, step: int, loss: float, batches_per_epoch: int | None = None) -> None:
        if batches_per_epoch:
            self._batches_per_epoch = max(1, int(batches_per_epoch))
        self.batches_received += 1
        if not math.isfinite(loss):
            return  # the run stops on it; the curve keeps the last finite point
        x = (step + 1) / self._batches_per_epoch
        self.raw.append(x, loss)
        self._ema_n += 1
        self._ema = EMA_WEIGHT * self._ema + (1 - EMA_WEIGHT) * loss
        self.smooth.append(x, self._ema / (1 - EMA_WEIGHT**self._ema_n))
        self._dirty = self._batches_changed = True

    def add_epoch(self, epoch: int, metrics: dict) -> None:
        """``epoch`` is 0-based; the point sits at the end of that epoch."""
        x = epoch + 1
        train_loss = _finite(metrics.get("train_loss"))
        val_loss = _finite(metrics.get("val_loss"))
        val_acc = _finite(metrics.get("val_acc"))
        if train_loss is not None:
            self.train_loss.append(x, train_loss)
        if val_loss is not None:
            self.val_loss.append(x, val_loss)
        if val_acc is not None:
            percent = val_acc * 100 if val_acc <= 1.0 else val_acc
            self.val_acc.append(x, percent)
            self._best_acc = percent if self._best_acc is None else max(self._best_acc, percent)
        parts = []
        if train_loss is not None:
            parts.append(f"train loss {train_loss:.3g}")
        if val_loss is not None:
            parts.append(f"validation loss {val_loss:.3g}")
        if val_acc is not None:
            parts.append(f"accuracy {self.val_acc.y[-1]:.1f} % (best {self._best_acc:.1f} %)")
        self.summary.setText(f"After epoch {x}:  " + "  ·  ".join(parts))
        self._dirty = self._epochs_changed = True

    def add_freeze_marker(self, step: int, label: str) -> None:
        """A vertical line on every plot where a freeze change took effect; the batch plot
        names it (shortened when long, stacked below a nearby one, the full text on hover)."""
        x = step / self._batches_per_epoch
        level = self._free_label_level(x)
        self.freeze_markers.append((x, label))
        self._marker_levels.append(level)
        pen = pg.mkPen(MARKER, width=1.5, style=Qt.PenStyle.DashLine)
        for plot in self.plots:
            named = plot is self.batch_plot
            line = pg.InfiniteLine(
                pos=x,
                angle=90,
                pen=pen,
                movable=False,
                label=short_marker_label(label) if named else None,
                # below the legend, which holds the top right corner
                labelOpts={
                    "position": MARKER_LABEL_HEIGHT - level * MARKER_LABEL_STEP,
                    "color": MARKER,
                    "anchors": [(0, 0), (0, 0)],
                },
            )
            line.setToolTip(label)
            if named:
                line.label.setToolTip(label)
            plot.addItem(line, ignoreBounds=True)
            self._marker_items.append((plot, line))
        self._dirty = True

    def _free_label_level(self, x: float) -> int:
        """The highest label row not taken by a marker near ``x`` (rows cycle when full)."""
        low, high = self.batch_plot.viewRange()[0]
        span = self._planned_epochs or max(high - low, 1e-9)
        near = {
            level
            for (other, _label), level in zip(self.freeze_markers, self._marker_levels)
            if abs(other - x) < MARKER_NEAR_SHARE * span
        }
        for level in range(MARKER_LABEL_LEVELS):
            if level not in near:
                return level
        return len(self.freeze_markers) % MARKER_LABEL_LEVELS

    def set_message(self, text: str) -> None:
        self.summary.setText(text)

    # ------------------------------------------------------------ drawing

    def redraw_if_dirty(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraw_count += 1
        # Only curves with new data are given it: a plot left alone is not repainted.
        if self._batches_changed:
            self._batches_changed = False
            self.raw_curve.setData(self.raw.x, self.raw.y)
            self.smooth_curve.setData(self.smooth.x, self.smooth.y)
            if self._planned_epochs and self.raw.size and self.raw.x[-1] > self._planned_epochs:
                self.set_planned_epochs(math.ceil(self.raw.x[-1]))  # beyond its plan
        if not self._epochs_changed:
            return
        self._epochs_changed = False
        self.train_loss_curve.setData(self.train_loss.x, self.train_loss.y)
        self.val_loss_curve.setData(self.val_loss.x, self.val_loss.y)
        self.val_acc_curve.setData(self.val_acc.x, self.val_acc.y)
        epochs = max(self.train_loss.size, self.val_acc.size)
        last_epoch = int(
            max((series.x[-1] for series in (self.train_loss, self.val_acc) if series.size), default=0)
        )
        if last_epoch > self._planned_epochs > 0:  # a run that goes on beyond its plan
            self.set_planned_epochs(last_epoch)
        elif epochs and not self._planned_epochs:
            # whole epochs on the per-epoch plots: 1, 2, 3 rather than 1, 1.5, 2
            step = max(1, math.ceil(epochs / 8))
            for plot in (self.epoch_loss_plot, self.acc_plot):
                plot.getAxis("bottom").setTickSpacing(step, step)
            for plot in self.plots:
                plot.enableAutoRange(axis="x", enable=True)

    # ------------------------------------------------------------ reflow

    def _scene_minimum(self):
        return self.canvas.ci.effectiveSizeHint(Qt.SizeHint.MinimumSize)

    def _arrange(self, stacked: bool) -> None:
        """The per-epoch plots side by side under the batch plot, or all three stacked
        (in a narrow column, where side by side would cut their titles and axes)."""
        if stacked == self._stacked:
            return
        layout = self.canvas.ci
        for plot in self.plots:
            layout.removeItem(plot)
        if stacked:
            for row, plot in enumerate(self.plots):
                layout.addItem(plot, row=row, col=0)
        else:
            layout.addItem(self.batch_plot, row=0, col=0, colspan=2)
            layout.addItem(self.epoch_loss_plot, row=1, col=0)
            layout.addItem(self.acc_plot, row=1, col=1)
        self._stacked = stacked
        # Stacked, each plot keeps a readable height; the column around it scrolls.
        floor = STACKED_PLOT_HEIGHT * len(self.plots) if stacked else 260
        self.canvas.setMinimumHeight(max(floor, int(self._scene_minimum().height()) + 4))

    @property
    def stacked(self) -> bool:
        """True while the three plots are shown one above the other."""
        return self._stacked

    def _reflow(self) -> None:
        if not self._stacked:
            self._side_by_side_width = self._scene_minimum().width()
        self._arrange(self.canvas.viewport().width() < self._side_by_side_width + 8)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._reflow()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        # The titles' and axes' sizes are known once the scene has been laid out.
        QTimer.singleShot(0, self._reflow)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        """Follow the application's light or dark palette."""
        apply_palette_to_plots(
            self.palette(), self.canvas, self.plots, (self.batch_legend, self.epoch_legend, self.acc_legend)
        )


def apply_palette_to_plots(palette: QPalette, canvas, plots, legends) -> None:
    """Colour a canvas's background, its plots' titles and axes and their legends after
    a light or dark palette."""
    background = palette.color(QPalette.ColorRole.Base)
    foreground = palette.color(QPalette.ColorRole.Text)
    canvas.setBackground(background)
    axis_pen = pg.mkPen(foreground)
    for plot in plots:
        plot.titleLabel.setText(plot.titleLabel.text, color=foreground, size="10pt")
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(axis_pen)
            axis.setTextPen(axis_pen)
    legend_brush = QColor(background)
    legend_brush.setAlpha(240)  # marker lines passing under it barely show through
    for legend in legends:
        legend.setBrush(legend_brush)
        legend.setLabelTextColor(foreground)
        for _sample, label in legend.items:  # setLabelTextColor does not re-render
            label.setText(label.text, color=foreground)


def freeze_change_text(changes: dict[str, bool]) -> str:
    """A freeze change in the words used everywhere: "blocks.15 trainable, backbone.top
    frozen" (layer names as the layer tree shows them)."""
    return ", ".join(f"{layer_label(name)} {'trainable' if on else 'frozen'}" for name, on in changes.items())


def short_marker_label(text: str) -> str:
    """A marker's label short enough not to run across the plot: the first change and how
    many more ("blocks.15 trainable +2"), or the text cut with an ellipsis."""
    parts = text.split(", ")
    short = parts[0] if len(parts) == 1 else f"{parts[0]} +{len(parts) - 1}"
    if len(short) > MARKER_LABEL_CHARS:
        short = short[: MARKER_LABEL_CHARS - 1].rstrip() + "…"
    return short


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
