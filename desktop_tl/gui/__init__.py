"""The desktop application: the only package that imports Qt (PySide6 and pyqtgraph).

It talks to :mod:`desktop_tl.core` and :mod:`desktop_tl.plugin` only, runs long work off
the GUI thread, and holds no training state of its own. Start it with
:func:`desktop_tl.gui.app.run_gui` or ``desktop-tl gui``.
"""
