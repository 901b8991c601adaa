"""Runs side by side: validation accuracy and loss curves overlaid, one colour per run,
and a table of the final metrics and the settings that differ.

With one run it shows that run's curves (training loss dashed) and all its settings. Runs
that cannot be compared with the first one (another dataset, class set or validation
split) are marked in the table header and explained above the plots.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.atomic import atomic_write_text
from ..core.run_comparison import Comparison, compare_runs, flatten_settings
from ..core.run_history import RunRecord
from ..errors import UserError
from .icons import semantic_colour
from .notice import Notice
from .plots import apply_palette_to_plots

#: Distinct colours (Tableau 10), one per run in the order the runs were chosen.
RUN_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
NOT_COMPARABLE = "not comparable"


def run_colour(index: int) -> QColor:
    return QColor(RUN_COLOURS[index % len(RUN_COLOURS)])


class ComparisonView(QWidget):
    """``set_runs(records)`` with one or more :class:`RunRecord`; ``save_curves(path)``
    writes the plots as PNG or SVG, ``save_table(path)`` the table as CSV."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list[RunRecord] = []
        self.comparison: Comparison | None = None
        self.curves: dict[str, list[pg.PlotDataItem]] = {"acc": [], "loss": []}
        #: Called instead of the file dialog (tests set it): (title, suggested name, filter) -> path.
        self.ask_save_path = None

        self.notice = Notice()
        self.notice.setObjectName("comparisonNotice")
        self.empty = QLabel(
            "Select a run to see its curves and settings, or several (Ctrl+click) to compare them."
        )
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setMinimumHeight(220)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.ci.setSpacing(12)
        self.acc_plot = self.canvas.addPlot(row=0, col=0)
        self.loss_plot = self.canvas.addPlot(row=0, col=1)
        self.plots = (self.acc_plot, self.loss_plot)
        self.acc_plot.setTitle("Validation accuracy")
        self.loss_plot.setTitle("Validation loss")
        for plot, ylabel in zip(self.plots, ("accuracy (%)", "loss")):
            plot.setLabel("bottom", "epoch")
            plot.setLabel("left", ylabel)
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
            for name in ("left", "bottom"):
                plot.getAxis(name).enableAutoSIPrefix(False)
        self.acc_plot.setYRange(0, 100, padding=0.05)
        self.acc_legend = self.acc_plot.addLegend(offset=(-10, -8))
        self.loss_legend = self.loss_plot.addLegend(offset=(-10, 8))

        self.table = QTableWidget()
        self.table.setObjectName("comparisonTable")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

        self.save_curves_button = QPushButton("Save curves…")
        self.save_curves_button.setToolTip("Write both plots as a PNG or SVG image.")
        self.save_curves_button.clicked.connect(self.choose_curves_file)
        self.save_table_button = QPushButton("Save table as CSV…")
        self.save_table_button.clicked.connect(self.choose_table_file)
        self.status = QLabel("")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_curves_button)
        buttons.addWidget(self.save_table_button)
        buttons.addWidget(self.status, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.canvas)
        self.splitter.addWidget(self.table)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.notice)
        layout.addWidget(self.empty, 1)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(buttons)
        self._apply_palette()
        self.set_runs([])

    # ------------------------------------------------------------ data in

    def set_runs(self, runs: Sequence[RunRecord]) -> None:
        self.runs = list(runs)
        self.comparison = compare_runs(self.runs) if len(self.runs) >= 2 else None
        self._clear_curves()
        has_runs = bool(self.runs)
        self.empty.setVisible(not has_runs)
        self.splitter.setVisible(has_runs)
        self.save_curves_button.setEnabled(has_runs)
        self.save_table_button.setEnabled(has_runs)
        self.status.setText("")
        if not has_runs:
            self.notice.clear_message()
            self.table.clear()
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            return
        single = len(self.runs) == 1
        self.loss_plot.setTitle("Loss (solid: validation, dashed: training)" if single else "Validation loss")
        messages = []
        for index, run in enumerate(self.runs):
            rows = run.metrics()
            if not rows:
                if single or self.comparison is None:
                    messages.append(
                        f"{run.name} has no metrics yet ({run.status}): "
                        "no epoch has finished, so there are no curves."
                    )
                continue
            self._add_curves(index, run, rows, single)
        epochs = max((len(r.metrics()) for r in self.runs), default=1)
        step = max(1, -(-epochs // 8))  # whole epochs on the x axis, at most about 8 ticks
        for plot in self.plots:
            plot.getAxis("bottom").setTickSpacing(step, step)
        if self.comparison is not None:
            messages = self.comparison.messages()
        for run in self.runs:
            if run.problem:
                messages.append(f"{run.name}: {run.problem}")
        level = "warning" if (self.comparison is not None and not self.comparison.comparable) else "info"
        self.notice.show_message(level, "\n".join(messages))
        self._fill_table()

    def _add_curves(self, index: int, run: RunRecord, rows, single: bool) -> None:
        colour = run_colour(index)
        epochs = np.array([r["epoch"] for r in rows], dtype=float)
        symbol = dict(symbol="o", symbolSize=6, symbolBrush=colour, symbolPen=colour)
        acc = [(e, r["val_acc"] * 100) for e, r in zip(epochs, rows) if "val_acc" in r]
        loss = [(e, r["val_loss"]) for e, r in zip(epochs, rows) if "val_loss" in r]
        name = run.name if len(run.name) <= 32 else run.name[:14] + "…" + run.name[-14:]
        if acc:
            x, y = zip(*acc)
            self.curves["acc"].append(
                self.acc_plot.plot(list(x), list(y), name=name, pen=pg.mkPen(colour, width=2), **symbol)
            )
        if loss:
            x, y = zip(*loss)
            self.curves["loss"].append(
                self.loss_plot.plot(
                    list(x),
                    list(y),
                    name=("validation" if single else name),
                    pen=pg.mkPen(colour, width=2),
                    **symbol,
                )
            )
        if single:
            train = [(e, r["train_loss"]) for e, r in zip(epochs, rows) if "train_loss" in r]
            if train:
                x, y = zip(*train)
                self.curves["loss"].append(
                    self.loss_plot.plot(
                        list(x),
                        list(y),
                        name="training",
                        pen=pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine),
                    )
                )
        self._apply_palette()

    def _clear_curves(self) -> None:
        for plot, legend in ((self.acc_plot, self.acc_legend), (self.loss_plot, self.loss_legend)):
            legend.clear()
            plot.clear()
        self.curves = {"acc": [], "loss": []}

    # ------------------------------------------------------------ the table

    def table_rows(self) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """The column headers (one per run) and the rows shown: metrics, then settings."""
        headers = []
        for index, run in enumerate(self.runs):
            header = run.name
            if self.comparison is not None and index in self.comparison.not_comparable:
                header += f"\n⚠ {NOT_COMPARABLE}"
            headers.append(header)
        if self.comparison is not None:
            rows = list(self.comparison.metric_rows())
            rows += [
                (key, ["" if v is None else str(v) for v in values])
                for key, values in self.comparison.differing
            ]
        else:
            run = self.runs[0]
            rows = [
                ("status", [run.status]),
                ("final val accuracy", [_share(run.val_acc)]),
                ("best val accuracy", [_share(run.best_val_acc)]),
                ("final val loss", ["" if run.val_loss is None else f"{run.val_loss:.4f}"]),
                ("epochs", [run.epochs_text]),
                ("duration", [run.duration_text]),
                ("classes", [", ".join(run.classes)]),
            ]
            rows += [
                (key, [str(value)]) for key, value in flatten_settings(run.config).items() if key != "out"
            ]
        return headers, rows

    def _fill_table(self) -> None:
        headers, rows = self.table_rows()
        self.table.clear()
        self.table.setColumnCount(len(headers))
        for column, (header, run) in enumerate(zip(headers, self.runs)):
            item = QTableWidgetItem(header)
            item.setForeground(run_colour(column))
            if self.comparison is not None and column in self.comparison.not_comparable:
                item.setToolTip(self.comparison.not_comparable[column])
                item.setForeground(semantic_colour("bad", self.palette()))
            else:
                item.setToolTip(str(run.path))
            self.table.setHorizontalHeaderItem(column, item)
        display: list[tuple[str, list[str] | None]] = list(rows)
        if self.comparison is not None:  # a heading row between the metrics and the settings
            n_metrics = len(self.comparison.metric_rows())
            heading = "settings that differ:" if self.comparison.differing else "no settings differ"
            display.insert(n_metrics, (heading, None))
        self.table.setRowCount(len(display))
        labels = []
        for row_index, (label, values) in enumerate(display):
            labels.append(label)
            for column, value in enumerate(values or []):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(row_index, column, item)
        self.table.setVerticalHeaderLabels(labels)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.resizeColumnsToContents()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column in range(self.table.columnCount()):
            self.table.setColumnWidth(column, min(self.table.columnWidth(column), 220))
        self.splitter.setSizes([1000, min(700, 160 + 200 * len(headers))])  # plots keep most room

    # ------------------------------------------------------------ results out

    def choose_curves_file(self) -> None:
        path = self._ask("Save curves", "curves.png", "PNG image (*.png);;SVG image (*.svg)")
        if path:
            self._report(lambda: self.save_curves(path))

    def choose_table_file(self) -> None:
        path = self._ask("Save table", "runs.csv", "CSV file (*.csv)")
        if path:
            self._report(lambda: self.save_table(path))

    def save_curves(self, path: str | os.PathLike[str]) -> Path:
        """Both plots as one PNG (pyqtgraph's exporter) or SVG."""
        import pyqtgraph.exporters as exporters

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".png", ".svg"):
            raise UserError(
                f"curves can be saved as .png or .svg, not {suffix or 'a file without extension'}"
            )
        if not path.parent.is_dir():
            raise UserError(f"folder {path.parent} does not exist")
        if suffix == ".png":
            exporter = exporters.ImageExporter(self.canvas.ci)
            exporter.parameters()["width"] = max(800, int(self.canvas.width()))
            exporter.export(str(path))
        else:
            # pyqtgraph 0.14's SVGExporter fails on Qt 6.8+ paths (pyqtgraph issue 3485);
            # Qt's own SVG generator draws the same scene as vectors.
            from PySide6.QtCore import QRect, QSize
            from PySide6.QtGui import QPainter
            from PySide6.QtSvg import QSvgGenerator

            size = self.canvas.size()
            generator = QSvgGenerator()
            generator.setFileName(str(path))
            generator.setSize(QSize(size.width(), size.height()))
            generator.setViewBox(QRect(0, 0, size.width(), size.height()))
            generator.setTitle("Validation curves: " + ", ".join(r.name for r in self.runs))
            painter = QPainter(generator)
            self.canvas.render(painter)
            painter.end()
        if not path.exists():
            raise UserError(f"could not write {path}")
        return path

    def save_table(self, path: str | os.PathLike[str]) -> Path:
        headers, rows = self.table_rows()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["", *[h.replace("\n", " ") for h in headers]])
        for label, values in rows:
            writer.writerow([label, *values])
        path = Path(path)
        try:
            atomic_write_text(path, buffer.getvalue())
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def _ask(self, title: str, name: str, filters: str) -> str:
        if self.ask_save_path is not None:
            return self.ask_save_path(title, name, filters)
        start = str(self.runs[0].path / name) if self.runs else name
        path, _ = QFileDialog.getSaveFileName(self, title, start, filters)
        return path

    def _report(self, action) -> None:
        try:
            written = action()
        except (UserError, OSError) as exc:
            self.status.setText(f"Not saved: {exc}")
            return
        self.status.setText(f"Saved {written}")

    # ------------------------------------------------------------ looks

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        apply_palette_to_plots(self.palette(), self.canvas, self.plots, (self.acc_legend, self.loss_legend))


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
