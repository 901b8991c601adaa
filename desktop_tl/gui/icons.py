"""Colours and small pictures drawn in code, so they follow the light or dark palette and
need no files or network.

Semantic colours (good, warning, bad) have a light-palette and a dark-palette variant
chosen for contrast against the palette's base colour.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPen, QPixmap

_SEMANTIC = {
    # name: (light palette, dark palette)
    "good": ("#2e7d32", "#66bb6a"),
    "warning": ("#a15c00", "#f5b041"),
    "bad": ("#c62828", "#ff6b6b"),
    "muted": ("#6b7280", "#9ca3af"),
    "accent": ("#1f6fb2", "#5aa9e6"),
}


def is_dark(palette: QPalette) -> bool:
    """True when the palette's window is dark (its text is lighter than its background)."""
    window = palette.color(QPalette.ColorRole.Window)
    text = palette.color(QPalette.ColorRole.WindowText)
    return window.lightness() < text.lightness()


def semantic_colour(name: str, palette: QPalette) -> QColor:
    """``good``, ``warning``, ``bad``, ``muted`` or ``accent``, readable on ``palette``."""
    light, dark = _SEMANTIC[name]
    return QColor(dark if is_dark(palette) else light)


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """The colour a fraction ``t`` (0..1) of the way from ``a`` to ``b``."""
    t = min(max(t, 0.0), 1.0)
    return QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


def readable_text_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background`` (WCAG luminance)."""

    def channel(value: int) -> float:
        c = value / 255.0
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    luminance = (
        0.2126 * channel(background.red())
        + 0.7152 * channel(background.green())
        + 0.0722 * channel(background.blue())
    )
    return QColor("#111111") if luminance > 0.36 else QColor("#ffffff")


def placeholder_pixmap(size: int, palette: QPalette, *, broken: bool = False) -> QPixmap:
    """A square tile shown while a thumbnail loads, or (``broken``) when it cannot be read."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    base = palette.color(QPalette.ColorRole.Base)
    text = palette.color(QPalette.ColorRole.Text)
    fill = mix(base, text, 0.07)
    border = mix(base, text, 0.22)
    rect = QRectF(1.5, 1.5, size - 3, size - 3)
    painter.setPen(QPen(border, 1.0))
    painter.setBrush(fill)
    painter.drawRoundedRect(rect, 6, 6)
    if broken:
        colour = semantic_colour("bad", palette)
        pen = QPen(colour, max(2.0, size / 32))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        # A picture frame with a crack through it.
        inner = rect.adjusted(size * 0.25, size * 0.28, -size * 0.25, -size * 0.28)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(inner, 3, 3)
        painter.drawLine(inner.topLeft() + (inner.topRight() - inner.topLeft()) * 0.55, inner.center())
        painter.drawLine(
            inner.center(), inner.bottomLeft() + (inner.bottomRight() - inner.bottomLeft()) * 0.4
        )
    else:
        colour = mix(base, text, 0.45)
        font = QFont(painter.font())
        font.setPointSizeF(max(7.0, size / 12))
        painter.setFont(font)
        painter.setPen(colour)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "loading…")
    painter.end()
    return pixmap
