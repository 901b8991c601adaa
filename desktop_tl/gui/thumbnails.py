"""Image thumbnails read on worker threads, cached, and painted for the views that list
images (the evaluation gallery and the prediction list share one painter)."""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QObject, QRect, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPalette, QPixmap

from .background import JobFailure, JobQueue
from .icons import placeholder_pixmap

#: Thumbnails kept in memory per loader (the oldest are dropped first).
CACHE_SIZE = 600


def read_thumbnail(path: str, max_side: int) -> QImage:
    """Decode ``path`` as the engine does (upright RGB) and shrink it to fit ``max_side``.

    Safe on a worker thread (QImage, unlike QPixmap, may be made off the GUI thread).
    Raises :class:`desktop_tl.core.images.ImageReadError` with a readable reason.
    """
    from PIL import Image

    from ..core.images import open_rgb

    image = open_rgb(path, max_side)  # a large JPEG decoded at a fraction of its size
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    width, height = image.size
    data = image.tobytes("raw", "RGB")
    # copy(): the QImage must own its pixels once ``data`` goes away
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class ThumbnailLoader(QObject):
    """Reads thumbnails on demand, off the GUI thread, one request per path.

    Call :meth:`request` from a paint or layout routine (it returns at once); ``ready`` or
    ``failed`` follows on the GUI thread. :meth:`image` and :meth:`error` answer from the
    cache, so a delegate can ask for what is visible and draw a placeholder meanwhile.
    """

    ready = Signal(str)  # path
    failed = Signal(str, str)  # path, reason

    def __init__(self, max_side: int, parent: QObject | None = None):
        super().__init__(parent)
        self.max_side = max_side
        self._jobs = JobQueue(self)
        self._images: OrderedDict[str, QImage] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._requested: set[str] = set()

    def image(self, path: str) -> QImage | None:
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
        return image

    def error(self, path: str) -> str | None:
        return self._errors.get(path)

    def request(self, path: str) -> None:
        if path in self._images or path in self._errors or path in self._requested:
            return
        self._requested.add(path)
        self._jobs.submit(
            read_thumbnail,
            path,
            self.max_side,
            on_result=lambda image, p=path: self._store(p, image),
            on_error=lambda failure, p=path: self._fail(p, failure),
        )

    def cancel_pending(self) -> None:
        """Drop requests not yet read (e.g. when the list they were for is replaced)."""
        self._jobs.cancel_pending()
        self._requested.clear()

    def clear(self) -> None:
        self.cancel_pending()
        self._images.clear()
        self._errors.clear()

    def wait(self, msecs: int = -1) -> bool:
        return self._jobs.wait(msecs)

    @property
    def busy(self) -> bool:
        return self._jobs.busy

    def _store(self, path: str, image: QImage) -> None:
        self._requested.discard(path)
        self._images[path] = image
        while len(self._images) > CACHE_SIZE:
            self._images.popitem(last=False)
        self.ready.emit(path)

    def _fail(self, path: str, failure: JobFailure) -> None:
        self._requested.discard(path)
        reason = getattr(failure.exception, "reason", None) or str(failure)
        self._errors[path] = reason
        self.failed.emit(path, reason)


class ThumbnailPainter:
    """Paints a path's thumbnail centred in a square box: the image once the loader has
    it (asking for it otherwise), a placeholder meanwhile, a broken-image mark when it
    cannot be read. Small images grow by a whole factor so their pixels stay crisp."""

    def __init__(self, loader: ThumbnailLoader) -> None:
        self.loader = loader
        self._pixmaps: dict[str, QPixmap] = {}

    def forget(self) -> None:
        """Drop the GPU-side pixmaps (the loader keeps its decoded images)."""
        self._pixmaps.clear()

    def paint(
        self, painter: QPainter, box: QRect, path: str, palette: QPalette, *, broken: bool = False
    ) -> None:
        pixmap = self._pixmaps.get(path)
        if pixmap is None:
            image = self.loader.image(path)
            if image is not None:
                pixmap = QPixmap.fromImage(image)
                self._pixmaps[path] = pixmap
        if pixmap is None:
            broken = broken or self.loader.error(path) is not None
            if not broken:
                self.loader.request(path)
            pixmap = placeholder_pixmap(box.width(), palette, broken=broken)
        size = pixmap.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
        if pixmap.width() <= box.width() and pixmap.height() <= box.height():
            factor = max(
                1, min(box.width() // max(1, pixmap.width()), box.height() // max(1, pixmap.height()))
            )
            size = pixmap.size() * factor
        target = QRect(
            box.x() + (box.width() - size.width()) // 2,
            box.y() + (box.height() - size.height()) // 2,
            size.width(),
            size.height(),
        )
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, size.width() < pixmap.width())
        painter.drawPixmap(target, pixmap)
