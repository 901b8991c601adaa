"""A layout checker for the window: finds what a user would see as broken on screen.

It walks the Qt widget tree of every tab and reports visible widgets that are clipped by
their parent, squeezed below their minimum size (text cut), cut off inside a scroll area
that does not scroll that way, or overlapping a visible sibling, and a window that did not
take the size it was asked for (its layouts need more room).

Internals of complex widgets (the line edit of a spin box or combo box, the scroll bars and
headers of a scroll area) are sized by their owner and may legitimately be clipped or
squeezed; the owner is checked instead.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QGraphicsView,
    QGraphicsWidget,
    QGroupBox,
    QLabel,
    QLineEdit,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QSplitterHandle,
    QStackedWidget,
    QTabBar,
    QTabWidget,
    QWidget,
)

#: Pixels of slack before something counts as clipped or overlapping (rounding at 2x).
TOLERANCE = 1
#: Rounds of event processing allowed for the layouts to stop moving.
SETTLE_ROUNDS = 20


def layout_problems(window: QWidget, size: tuple[int, int] | None = None) -> list[str]:
    """Every layout problem of ``window`` on each of its tabs, as readable sentences.

    ``size`` is the size the window was asked to take; a window that stays larger
    (its layouts cannot shrink that far) is a problem too. The current tab is restored.
    """
    settle(window)
    problems: list[str] = []
    if size is not None:
        width, height = size
        actual = window.size()
        if actual.width() > width + TOLERANCE or actual.height() > height + TOLERANCE:
            minimum = window.minimumSizeHint()
            problems.append(
                f"window: asked for {width}x{height} but it stays {actual.width()}x"
                f"{actual.height()} (its layouts need at least {minimum.width()}x"
                f"{minimum.height()})"
            )
    tabs = [t for t in window.findChildren(QTabWidget) if t.isVisible() and not _is_internal(t, window)]
    if not tabs:
        problems.extend(widget_problems(window))
        return problems
    main_tabs = tabs[0]
    current = main_tabs.currentIndex()
    try:
        for index in range(main_tabs.count()):
            main_tabs.setCurrentIndex(index)
            settle(window)
            label = main_tabs.tabText(index).split(" (")[0]
            problems.extend(f"{label} tab: {p}" for p in widget_problems(window))
    finally:
        main_tabs.setCurrentIndex(current)
        QApplication.processEvents()
    # The same widget outside the tabs (menus, status bar) is reported once per tab.
    return list(dict.fromkeys(problems))


def settle(window: QWidget) -> None:
    """Process events until no visible widget of ``window`` moves or resizes.

    One round is not always enough: a word-wrapped label that gets a new width asks for a
    new height, and its layout places the widgets below it only in a later round. Checking
    in between would report a widget clipped that the user never sees clipped.
    """
    before = None
    for _ in range(SETTLE_ROUNDS):
        QApplication.processEvents()
        now = [(id(w), w.geometry().getRect()) for w in [window, *_visible_widgets(window)]]
        if now == before:
            return
        before = now


def widget_problems(root: QWidget) -> list[str]:
    """The layout problems among the visible widgets under ``root`` as it is now."""
    problems: list[str] = []
    for widget in _visible_widgets(root):
        problems.extend(_clipping(widget))
        problems.extend(_squeezing(widget))
        problems.extend(_scene_overflow(widget))
    for parent in [root, *_visible_widgets(root)]:
        problems.extend(_overlaps(parent, root))
    return problems


# ---------------------------------------------------------------- the walk


def _visible_widgets(root: QWidget) -> list[QWidget]:
    found: list[QWidget] = []
    stack = [root]
    while stack:
        parent = stack.pop()
        for child in parent.children():
            if not isinstance(child, QWidget) or child.isWindow():
                continue
            if not child.isVisible() or _is_internal(child, root):
                continue
            if child.width() <= 0 or child.height() <= 0:
                continue
            found.append(child)
            stack.append(child)
    return found


def _is_internal(widget: QWidget, root: QWidget) -> bool:
    """A part of a complex widget, laid out by that widget rather than by a layout."""
    if isinstance(widget, (QSplitterHandle, QMenu)):
        return True
    parent = widget.parentWidget()
    if parent is None or widget is root:
        return False
    if isinstance(parent, (QAbstractSpinBox, QComboBox, QLineEdit, QTabBar)):
        return True
    if isinstance(parent, QAbstractScrollArea) and widget is not parent.viewport():
        return True
    grandparent = parent.parentWidget()
    # What an item view shows in its viewport (editors, index widgets) is its own business.
    if (
        isinstance(grandparent, QAbstractScrollArea)
        and parent is grandparent.viewport()
        and not isinstance(grandparent, QScrollArea)
    ):
        return True
    return False


def _describe(widget: QWidget) -> str:
    name = type(widget).__name__
    if widget.objectName() and not widget.objectName().startswith("qt_"):
        name += f" #{widget.objectName()}"
    text = ""
    for attribute in ("text", "title", "placeholderText"):
        getter = getattr(widget, attribute, None)
        if callable(getter):
            try:
                value = getter()
            except TypeError:
                continue
            if isinstance(value, str) and value.strip():
                text = value.strip().splitlines()[0]
                break
    if text:
        name += f" '{text[:40]}'"
    elif widget.toolTip():
        name += f" (tooltip '{widget.toolTip().splitlines()[0][:40]}')"
    parent = widget.parentWidget()
    while parent is not None and not parent.isWindow():
        if isinstance(parent, QGroupBox) and parent.title():
            return f"{name} in '{parent.title()}'"
        parent = parent.parentWidget()
    return name


def _rect(rect: QRect) -> str:
    return f"{rect.width()}x{rect.height()} at ({rect.x()}, {rect.y()})"


# ---------------------------------------------------------------- the rules


def _clipping(widget: QWidget) -> list[str]:
    parent = widget.parentWidget()
    if parent is None:
        return []
    geometry = widget.geometry()
    bounds = parent.rect()
    over_right = geometry.right() - bounds.right() > TOLERANCE or geometry.left() < -TOLERANCE
    over_bottom = geometry.bottom() - bounds.bottom() > TOLERANCE or geometry.top() < -TOLERANCE
    if not (over_right or over_bottom):
        return []
    area = parent.parentWidget()
    if isinstance(area, QAbstractScrollArea) and parent is area.viewport():
        cut = []
        if over_right and area.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff:
            cut.append("horizontally")
        if over_bottom and area.verticalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff:
            cut.append("vertically")
        if not cut:
            return []  # the scroll area scrolls to it
        return [
            f"{_describe(widget)} ({_rect(geometry)}) is cut off {' and '.join(cut)} "
            f"inside {_describe(area)} ({bounds.width()}x{bounds.height()}), which does "
            "not scroll that way"
        ]
    return [
        f"{_describe(widget)} ({_rect(geometry)}) is clipped by its parent "
        f"{_describe(parent)} ({bounds.width()}x{bounds.height()})"
    ]


def _squeezing(widget: QWidget) -> list[str]:
    hint = widget.minimumSizeHint()
    if not hint.isValid():
        return []
    policy = widget.sizePolicy()
    explicit = widget.minimumSize()
    problems = []
    # A set minimum size replaces the hint (that is how Qt lays it out); an Ignored policy
    # says the widget copes with any size.
    need_width = explicit.width() or hint.width()
    if policy.horizontalPolicy() == QSizePolicy.Policy.Ignored:
        need_width = explicit.width()
    need_height = explicit.height() or hint.height()
    if policy.verticalPolicy() == QSizePolicy.Policy.Ignored:
        need_height = explicit.height()
    if isinstance(widget, QLabel) and widget.wordWrap():
        need_width = explicit.width()  # wraps to any width; its height is what counts
    if widget.hasHeightForWidth():
        # Wrapped text: the height it needs depends on the width it got, not on the hint.
        # A container's own figure is only a rough estimate, so it is left out; one that is
        # really too short squeezes its children, and they are checked themselves.
        need_height = (
            max(explicit.height(), widget.heightForWidth(widget.width()))
            if widget.layout() is None
            else explicit.height()
        )
    if isinstance(widget, QAbstractScrollArea):
        return []  # scrolls what does not fit
    area = widget.parentWidget().parentWidget() if widget.parentWidget() else None
    if isinstance(area, QScrollArea) and area.widget() is widget:
        # A scroll area's content is as big as the area allows and scrolls the rest; what
        # would be cut shows up in its children.
        if area.horizontalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff:
            need_width = 0
        if area.verticalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff:
            need_height = 0
    if widget.width() + TOLERANCE < need_width:
        problems.append(
            f"{_describe(widget)} is squeezed to {widget.width()} px wide, "
            f"below the {need_width} px its content needs"
        )
    if widget.height() + TOLERANCE < need_height:
        problems.append(
            f"{_describe(widget)} is squeezed to {widget.height()} px high, "
            f"below the {need_height} px its content needs"
        )
    return problems


def _scene_overflow(widget: QWidget) -> list[str]:
    """A graphics view (a plot) whose laid-out scene needs more room than the view has:
    its titles and axes are cut inside the view, where the widget tree cannot see it."""
    if not isinstance(widget, QGraphicsView) or widget.scene() is None:
        return []
    view = widget.viewport().size()
    for item in widget.scene().items():
        if item.parentItem() is not None or not isinstance(item, QGraphicsWidget):
            continue
        if QGraphicsWidget.layout(item) is None:  # (some subclasses shadow layout())
            continue
        need = item.effectiveSizeHint(Qt.SizeHint.MinimumSize)
        if need.width() > view.width() + TOLERANCE or need.height() > view.height() + TOLERANCE:
            return [
                f"{_describe(widget)} shows {view.width()}x{view.height()} px of a scene "
                f"laid out for at least {need.width():.0f}x{need.height():.0f} px "
                "(its titles or axes are cut)"
            ]
    return []


def _overlaps(parent: QWidget, root: QWidget) -> list[str]:
    if isinstance(parent, QStackedWidget):
        return []
    children = [
        c
        for c in parent.children()
        if isinstance(c, QWidget)
        and not c.isWindow()
        and c.isVisible()
        and not _is_internal(c, root)
        and c.width() > 0
        and c.height() > 0
    ]
    problems = []
    for i, first in enumerate(children):
        for second in children[i + 1 :]:
            overlap = first.geometry().intersected(second.geometry())
            if overlap.width() > TOLERANCE and overlap.height() > TOLERANCE:
                problems.append(
                    f"{_describe(first)} ({_rect(first.geometry())}) overlaps "
                    f"{_describe(second)} ({_rect(second.geometry())}) in "
                    f"{_describe(parent)}"
                )
    return problems


def describe_problems(problems: list[str]) -> str:
    """The problems one a line, for an assertion message."""
    return "\n".join(problems) if problems else "(none)"
