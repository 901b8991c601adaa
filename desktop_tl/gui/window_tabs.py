"""How the main window is laid out: a row of tabs, the first of which, Train, holds the
numbered steps (data, model, layers, training and its curves) side by side; Evaluation,
Prediction, Runs and Log each get the whole window.

The tab labels carry news: "Evaluation (new results)" until that tab is looked at, and
"Log (2 new warnings)" for the problems logged since the Log was last open.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtWidgets import QGroupBox, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget

from .log_view import LogView


def build_train_page(
    data: QWidget, model: QWidget, layers: QWidget, training: QWidget, curves: QWidget
) -> tuple[QWidget, QSplitter]:
    """The Train tab: data and model on the left, the layer tree in the middle, training
    settings over the curves on the right, in a splitter. The side columns scroll
    vertically and are never narrower than their content, so nothing is cut sideways; the
    training settings go from two a row to one when their column is narrow. Returns the
    page and its splitter."""
    left = QWidget()
    left_layout = QVBoxLayout(left)
    left_layout.setContentsMargins(0, 0, 4, 0)
    left_layout.setSpacing(10)
    left_layout.addWidget(_group("1 · Data", data))
    left_layout.addWidget(_group("2 · Model", model))
    left_layout.addStretch(1)

    center = _group("3 · Layers to train", layers)

    right = QWidget()
    right_layout = QVBoxLayout(right)
    right_layout.setContentsMargins(4, 0, 0, 0)
    right_layout.setSpacing(10)
    right_layout.addWidget(_group("4 · Train", training), 0)
    right_layout.addWidget(_group("Curves", curves), 1)

    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.setObjectName("mainSplitter")
    splitter.setChildrenCollapsible(False)
    splitter.addWidget(VerticalScrollColumn(left))
    splitter.addWidget(center)
    splitter.addWidget(VerticalScrollColumn(right))
    splitter.setStretchFactor(0, 0)
    splitter.setStretchFactor(1, 1)
    splitter.setStretchFactor(2, 2)
    splitter.setSizes([390, 440, 750])
    page = QWidget()
    page_layout = QVBoxLayout(page)
    page_layout.setContentsMargins(8, 8, 8, 4)
    page_layout.addWidget(splitter)
    return page, splitter


class VerticalScrollColumn(QScrollArea):
    """A column that scrolls up and down when the window is short, and is never narrower
    than its content needs (so it never cuts anything off at the side)."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        content.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        content = self.widget()
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(content.minimumSizeHint().width() + bar + 2 * self.frameWidth(), 120)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(
            max(self.minimumSizeHint().width(), self.widget().sizeHint().width()),
            self.widget().sizeHint().height(),
        )

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's needs changed (e.g. settings reflowed)
        return super().eventFilter(watched, event)


class MainTabs(QTabWidget):
    """The window's tabs. ``evaluation`` and ``log`` are the views whose labels carry news."""

    def __init__(
        self, train_page: QWidget, evaluation: QWidget, prediction: QWidget, runs: QWidget, log: LogView
    ) -> None:
        super().__init__()
        self.setObjectName("mainTabs")
        self.setDocumentMode(True)
        self._evaluation = evaluation
        self._log = log
        self._seen_problems = 0
        self.addTab(train_page, "Train")
        # Matrix, table and gallery need more height than a 640 px window has: scroll.
        self.addTab(_padded(VerticalScrollColumn(evaluation)), "Evaluation")
        self.addTab(_padded(prediction), "Prediction")
        self.addTab(_padded(runs), "Runs")
        self.addTab(_padded(log), "Log")
        self.currentChanged.connect(self._on_current_changed)
        log.problem_logged.connect(lambda _level, _message: self._label_log_tab())

    def index_of(self, widget: QWidget) -> int:
        """The tab holding ``widget`` (a view or a page); -1 when none does."""
        for index in range(self.count()):
            page = self.widget(index)
            if page is widget or page.isAncestorOf(widget):
                return index
        return -1

    def show_page(self, widget: QWidget) -> None:
        """Bring the tab holding ``widget`` to the front."""
        index = self.index_of(widget)
        if index >= 0:
            self.setCurrentIndex(index)

    def mark_new_results(self) -> None:
        index = self.index_of(self._evaluation)
        if self.currentIndex() != index:
            self.setTabText(index, "Evaluation (new results)")

    def forget_new_results(self) -> None:
        """The results were cleared: no more "(new results)" on the Evaluation tab."""
        self.setTabText(self.index_of(self._evaluation), "Evaluation")

    def _problems(self) -> int:
        return self._log.count("warning") + self._log.count("error")

    def _on_current_changed(self, index: int) -> None:
        if index == self.index_of(self._evaluation):
            self.setTabText(index, "Evaluation")
        if index == self.index_of(self._log):
            self._seen_problems = self._problems()
            self._label_log_tab()

    def _label_log_tab(self) -> None:
        index = self.index_of(self._log)
        unseen = self._problems() - self._seen_problems
        if self.currentIndex() == index or unseen <= 0:
            self.setTabText(index, "Log")
        else:
            self.setTabText(index, f"Log ({unseen} new warning{'s' if unseen != 1 else ''})")


def _group(title: str, widget: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(10, 12, 10, 10)
    layout.addWidget(widget)
    return box


def _padded(widget: QWidget) -> QWidget:
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(8, 8, 8, 4)
    layout.addWidget(widget)
    return page
