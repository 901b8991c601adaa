"""Draw the desktop-tl application icon and write it in the sizes each platform wants.

Run from the repository root: ``python resources/make_icons.py``. The outputs under
``resources/icons/`` are committed (they are resources, not build outputs); rerun this
only when the drawing changes. Needs Pillow only.

- Linux (freedesktop hicolor theme): ``desktop-tl-<N>.png`` for N in 16..512
- Windows: ``desktop-tl.ico`` (16, 24, 32, 48, 64, 128, 256 inside one file)
- macOS: ``desktop-tl.icns`` (16..512 and their @2x forms, from the 1024 master)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICON_DIR = Path(__file__).resolve().parent / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
MASTER = 1024


def draw_master(size: int = MASTER) -> Image.Image:
    """A rounded tile with a small layered network: three frozen (grey) layers feeding a
    bright new head, the picture of transfer learning the app automates."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    unit = size / 16
    draw.rounded_rectangle(
        (unit * 0.5, unit * 0.5, size - unit * 0.5, size - unit * 0.5),
        radius=unit * 3,
        fill=(32, 56, 100, 255),
    )
    columns = [unit * 3.2, unit * 6.4, unit * 9.6, unit * 12.8]
    rows_per_column = [4, 4, 3, 2]
    nodes = []
    for x, rows in zip(columns, rows_per_column):
        spacing = unit * 2.6
        top = size / 2 - spacing * (rows - 1) / 2
        nodes.append([(x, top + spacing * i) for i in range(rows)])
    frozen, trained = (150, 170, 200, 255), (255, 190, 60, 255)
    for layer, (left, right) in enumerate(zip(nodes, nodes[1:])):
        colour = trained if layer == len(nodes) - 2 else frozen
        for a in left:
            for b in right:
                draw.line((a, b), fill=colour, width=max(1, int(unit * 0.28)))
    radius = unit * 0.9
    for layer, column in enumerate(nodes):
        colour = trained if layer == len(nodes) - 1 else (225, 232, 245, 255)
        for x, y in column:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return image


def main() -> None:
    ICON_DIR.mkdir(parents=True, exist_ok=True)
    master = draw_master()
    for size in PNG_SIZES:
        master.resize((size, size), Image.Resampling.LANCZOS).save(
            ICON_DIR / f"desktop-tl-{size}.png", optimize=True
        )
    master.save(ICON_DIR / "desktop-tl.ico", sizes=[(s, s) for s in ICO_SIZES])
    master.save(ICON_DIR / "desktop-tl.icns")
    print(f"wrote icons to {ICON_DIR}")


if __name__ == "__main__":
    main()
