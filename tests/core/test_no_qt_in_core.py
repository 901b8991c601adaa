"""The engine and the plugin API never import Qt: they run in scripts and cluster jobs."""

import subprocess
import sys


def test_importing_core_and_plugin_api_leaves_qt_out():
    code = (
        "import sys\n"
        "import desktop_tl.core.training, desktop_tl.core.predict, desktop_tl.core.data\n"
        "import desktop_tl.core.layers, desktop_tl.core.model, desktop_tl.core.weights\n"
        "import desktop_tl.plugin.manager, desktop_tl.cli\n"
        "from desktop_tl.plugin.manager import get_host\n"
        "get_host().backbone_providers()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
