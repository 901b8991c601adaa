"""The Qt-free engine: usable from scripts, notebooks, the CLI and cluster jobs."""
