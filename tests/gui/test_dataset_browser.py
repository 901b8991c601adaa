"""The dataset browser on real images: filters, leaving images out of training and
bringing them back, the skipped files with their reasons, the enlarged view, its layout
at small and large sizes, and 10,000 images that open without reading 10,000 thumbnails."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from desktop_tl.gui.layout_check import describe_problems, layout_problems, widget_problems
from helpers_data import LoaderHost, make_image_folder, truncate_file
from window_helpers import save_screenshot


@pytest.fixture
def damaged_dataset(tmp_path):
    """Three classes of ten real images, a random split; one image cut short."""
    root = tmp_path / "pets"
    make_image_folder(root, {"red": 10, "green": 10, "blue": 10}, size=(48, 48))
    truncate_file(root / "green" / "green_004.png", 0.3)
    return root


def open_browser(window, qtbot, data):
    panel = window.data_panel
    panel.set_path(data)
    qtbot.waitUntil(lambda: panel.prepared is not None and not panel.busy, timeout=60_000)
    assert panel.view_images_button.isVisible()
    qtbot.mouseClick(panel.view_images_button, Qt.MouseButton.LeftButton)
    browser = panel.browser
    qtbot.waitExposed(browser)
    return panel, browser


def shown_keys(browser) -> list[str]:
    return [item.key for item in browser.model.shown()]


def panel_image_count(panel) -> int:
    table = panel.class_table
    return sum(int(table.item(row, column).text()) for row in range(table.rowCount()) for column in (1, 2))


def select_rows(qtbot, browser, rows):
    """Ctrl+click the tiles of ``rows`` as a person would."""
    grid = browser.grid
    for i, row in enumerate(rows):
        rect = grid.visualRect(browser.model.index(row))
        modifier = Qt.KeyboardModifier.ControlModifier if i else Qt.KeyboardModifier.NoModifier
        qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def wait_checked(qtbot, panel):
    qtbot.waitUntil(lambda: panel.prepared is not None and not panel.busy, timeout=60_000)


def test_filters_by_class_and_split_and_the_skipped_files_with_reasons(qtbot, window, damaged_dataset):
    panel, browser = open_browser(window, qtbot, damaged_dataset)
    prepared = panel.prepared
    assert browser.model.rowCount() == 29  # the unreadable one is not among the images
    assert "Showing 29 of 29 images" in browser.count_label.text()

    browser.class_combo.setCurrentIndex(browser.class_combo.findText("green"))
    assert browser.model.rowCount() == 9
    assert {item.class_name for item in browser.model.shown()} == {"green"}
    qtbot.mouseClick(browser.show_buttons["val"], Qt.MouseButton.LeftButton)
    val_green = {os.path.normpath(p) for p, label in prepared.val if prepared.class_names[label] == "green"}
    assert {os.path.normpath(item.path) for item in browser.model.shown()} == val_green
    assert browser.show_buttons["val"].text() == f"Validation ({len(val_green)})"
    assert not browser.show_buttons["test"].isVisible()  # this dataset has no test split

    qtbot.mouseClick(browser.show_buttons["skipped"], Qt.MouseButton.LeftButton)
    assert browser.stack.currentWidget() is browser.skipped_table
    table = browser.skipped_table
    rows = [r for r in range(table.rowCount()) if not table.isRowHidden(r)]
    assert [table.item(r, 0).text() for r in rows] == ["green/green_004.png"]
    reason = table.item(rows[0], 1).text()
    assert reason and reason == dict(prepared.bad_files)[str(damaged_dataset / "green" / "green_004.png")]
    assert not table.item(rows[0], 0).icon().isNull()  # the broken-image mark beside it
    save_screenshot(browser, "dataset_browser_skipped")

    browser.class_combo.setCurrentIndex(browser.class_combo.findText("red"))  # none skipped in red
    assert all(table.isRowHidden(r) for r in range(table.rowCount()))
    qtbot.mouseClick(browser.show_buttons["all"], Qt.MouseButton.LeftButton)
    assert browser.stack.currentWidget() is browser.grid and browser.model.rowCount() == 10


def test_leaving_images_out_changes_the_project_and_bringing_them_back_restores_it(
    qtbot, window, damaged_dataset
):
    panel, browser = open_browser(window, qtbot, damaged_dataset)
    window.setWindowModified(False)
    before = panel_image_count(panel)
    assert before == 29
    assert not browser.leave_out_button.isEnabled()  # nothing selected yet
    assert "Select one or more images" in browser.leave_out_button.toolTip()

    select_rows(qtbot, browser, [0, 3])
    chosen = [browser.model.item(0).key, browser.model.item(3).key]
    assert "2 selected" in browser.count_label.text()
    qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
    wait_checked(qtbot, panel)

    assert panel_image_count(panel) == before - 2
    assert "2 left out by you" in panel.summary_label.text()
    assert window.current_config().data.exclude == chosen
    assert window.isWindowModified()  # the project has changed
    assert all(browser.model.is_left_out(browser.model.item(row)) for row in (0, 3))  # dimmed in place
    assert browser.model.rowCount() == 29
    qtbot.mouseClick(browser.show_buttons["train"], Qt.MouseButton.LeftButton)
    assert not set(chosen) & set(shown_keys(browser))  # no longer among the images that train
    qtbot.mouseClick(browser.show_buttons["excluded"], Qt.MouseButton.LeftButton)
    assert shown_keys(browser) == chosen
    assert all(browser.model.is_left_out(item) for item in browser.model.shown())
    assert browser.show_buttons["excluded"].text() == "Left out (2)"
    save_screenshot(browser, "dataset_browser_left_out")
    for path in (damaged_dataset / key for key in chosen):
        assert path.is_file()  # left out, not deleted

    # Bring one back through the context menu.
    grid = browser.grid
    first = grid.visualRect(browser.model.index(0)).center()
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=first)
    grid.customContextMenuRequested.emit(first)
    menu = browser._context_menu
    action = next(a for a in menu.actions() if a.text() == "Bring image back")
    assert action.isEnabled()
    action.trigger()
    menu.close()
    wait_checked(qtbot, panel)
    assert window.current_config().data.exclude == chosen[1:]
    assert panel_image_count(panel) == before - 1
    assert shown_keys(browser) == chosen[1:]

    # Saved with the project and read back.
    project = damaged_dataset.parent / "project.toml"
    window.current_config().save(project)
    from desktop_tl.core.config import RunConfig

    assert RunConfig.load(project).data.exclude == chosen[1:]


def focus_order(dialog) -> list[str]:
    """The dialog's buttons in the order Tab reaches them."""
    from PySide6.QtWidgets import QPushButton

    names, widget = [], dialog.nextInFocusChain()
    while widget is not dialog:
        if isinstance(widget, QPushButton) and widget.isVisible():
            names.append(widget.text())
        widget = widget.nextInFocusChain()
    return names


def test_a_double_click_enlarges_and_arrows_step_through_the_shown_images(qtbot, window, damaged_dataset):
    panel, browser = open_browser(window, qtbot, damaged_dataset)
    grid = browser.grid
    # A real double click: press and release, then the double-click event.
    centre = grid.visualRect(browser.model.index(1)).center()
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    preview = browser.preview
    assert preview is not None and preview.isVisible()
    qtbot.waitUntil(preview.has_image, timeout=10_000)
    assert preview.current_item() == browser.model.item(1)
    assert browser.model.item(1).class_name == "blue" and "<b>blue</b>" in preview.caption.text()
    assert preview.position_label.text() == "2 of 29"
    assert preview.path_label.text() == os.path.normpath(browser.model.item(1).path)
    pixmap = preview.image_label.pixmap()
    assert pixmap.width() > 48  # a 48-pixel image shown larger
    save_screenshot(preview, "dataset_browser_enlarged")
    # Tab goes along the row as it reads, so Space on the first button does not leave the
    # image out.
    assert focus_order(preview) == ["◀ Previous", "Next ▶", "Leave out of training", "Close"]

    qtbot.keyClick(preview, Qt.Key.Key_Right)
    assert preview.current_item() == browser.model.item(2)
    # Enter on the grid enlarges the current image too.
    grid.setFocus()
    grid.setCurrentIndex(browser.model.index(5))
    qtbot.keyClick(grid, Qt.Key.Key_Return)
    assert preview.current_item() == browser.model.item(5)

    # Leave out from the enlarged view.
    item = preview.current_item()
    qtbot.mouseClick(preview.toggle_button, Qt.MouseButton.LeftButton)
    assert "left out" in preview.caption.text() and preview.toggle_button.text() == "Bring back"
    wait_checked(qtbot, panel)
    assert window.current_config().data.exclude == [item.key]


def test_leaving_out_is_locked_while_the_panel_is_locked(qtbot, window, damaged_dataset):
    """A disabled panel (as during training) locks leaving out, with the reason."""
    panel, browser = open_browser(window, qtbot, damaged_dataset)
    select_rows(qtbot, browser, [0])
    assert browser.leave_out_button.isEnabled()
    panel.setEnabled(False)
    assert browser.isEnabled() and not browser.leave_out_button.isEnabled()
    assert "Training is running" in browser.leave_out_button.toolTip()
    panel.setEnabled(True)
    assert browser.leave_out_button.isEnabled()


def test_a_class_left_out_entirely_is_explained_and_can_be_brought_back(qtbot, window, tmp_path):
    data = tmp_path / "small"
    make_image_folder(data, {"cat": 3, "dog": 3}, size=(24, 24))
    panel, browser = open_browser(window, qtbot, data)
    browser.class_combo.setCurrentIndex(browser.class_combo.findText("cat"))
    select_rows(qtbot, browser, [0, 1, 2])
    qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy and panel.problem != "", timeout=60_000)
    assert "left out by you" in panel.problem
    assert "cannot be trained on as it is" in browser.count_label.text()
    qtbot.mouseClick(browser.show_buttons["excluded"], Qt.MouseButton.LeftButton)
    assert browser.model.rowCount() == 3
    grid = browser.grid
    grid.selectAll()
    qtbot.mouseClick(browser.bring_back_button, Qt.MouseButton.LeftButton)
    wait_checked(qtbot, panel)
    assert panel.excluded_images() == [] and panel_image_count(panel) == 6


def test_another_dataset_with_the_same_names_starts_with_none_left_out(qtbot, window, tmp_path):
    """The left-out list names images of the dataset it was made in: another dataset
    with the same file names is used whole, and choosing the first again brings it back."""
    first, second = tmp_path / "site-a", tmp_path / "site-b"
    for root in (first, second):
        make_image_folder(root, {"cat": 4, "dog": 4}, size=(24, 24))
    panel, browser = open_browser(window, qtbot, first)
    select_rows(qtbot, browser, [0, 1])
    chosen = [browser.model.item(0).key, browser.model.item(1).key]
    qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
    wait_checked(qtbot, panel)
    assert panel_image_count(panel) == 6
    assert all((second / key).is_file() for key in chosen)  # the same names exist there

    window.setWindowModified(False)
    panel.set_path(second)
    wait_checked(qtbot, panel)
    assert panel_image_count(panel) == 8
    assert window.current_config().data.exclude == []
    assert window.isWindowModified()
    assert (
        panel.notice.isVisible()
        and "The 2 images left out of training in site-a are not left out" in panel.notice.text()
    )
    from desktop_tl.gui.preferences_dialog import apply_theme

    try:
        for theme, (width, height) in [
            ("light", (1024, 640)),
            ("light", (1920, 1080)),
            ("dark", (1024, 640)),
        ]:
            apply_theme(theme)
            window.resize(width, height)
            qtbot.wait(50)
            problems = layout_problems(window, (width, height))
            save_screenshot(window, f"data_panel_other_dataset_{width}x{height}_{theme}")
            assert problems == [], f"at {width}x{height} {theme}:\n{describe_problems(problems)}"
    finally:
        apply_theme("system")

    panel.set_path(first)
    wait_checked(qtbot, panel)
    assert window.current_config().data.exclude == chosen
    assert panel_image_count(panel) == 6
    assert "2 images left out of training here before are left out again" in panel.notice.text()


def test_a_moved_dataset_keeps_its_left_out_images(qtbot, window, tmp_path):
    old = tmp_path / "old place"
    make_image_folder(old, {"cat": 4, "dog": 4}, size=(24, 24))
    panel, browser = open_browser(window, qtbot, old)
    select_rows(qtbot, browser, [0])
    chosen = [browser.model.item(0).key]
    qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
    wait_checked(qtbot, panel)
    new = tmp_path / "new place"
    old.rename(new)
    panel.set_path(new)
    wait_checked(qtbot, panel)
    assert window.current_config().data.exclude == chosen
    assert panel_image_count(panel) == 7


def test_a_run_started_after_leaving_images_out_trains_without_them(
    qtbot, gui_backend, settings, runs_dir, tmp_path
):
    """Start trains on the panel's check, the images left out included in no split."""
    import json

    from helpers_counting import CountingLoadsHost

    from desktop_tl.gui.main_window import MainWindow
    from window_helpers import configure_fast_run

    data = tmp_path / "colours"
    make_image_folder(data, {"red": 6, "green": 6}, size=(32, 32))
    host = CountingLoadsHost(gui_backend["host"])
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.set_backend(host, gui_backend["devices"])
    configure_fast_run(window, qtbot, data, epochs=1)
    panel = window.data_panel
    panel.open_browser()
    browser = panel.browser
    qtbot.waitExposed(browser)
    select_rows(qtbot, browser, [0, 7])
    chosen = [item.key for item in browser.selected_items()]
    qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.is_ready, timeout=60_000)
    checked = host.loads

    with qtbot.waitSignal(window.training.run_finished, timeout=120_000) as blocker:
        qtbot.mouseClick(window.training_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.training.session is None, timeout=10_000)
    finished = blocker.args[0]
    assert finished.status == "completed", finished.reason
    assert host.loads == checked  # the panel's check, left-out images and all, was used
    assert finished.summary["num_excluded"] == 2
    assert finished.summary["num_train"] + finished.summary["num_val"] == 10
    run_dir = finished.summary["run_dir"]
    split = json.loads((Path(run_dir) / "split.json").read_text(encoding="utf-8"))
    assert not {p for subset in ("train", "val", "test") for p, _ in split[subset]} & set(chosen)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_browser_reads_well_at_small_and_large_sizes(qtbot, window, damaged_dataset, theme):
    from desktop_tl.gui.preferences_dialog import apply_theme

    apply_theme(theme)
    try:
        panel, browser = open_browser(window, qtbot, damaged_dataset)
        select_rows(qtbot, browser, [1])
        qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
        wait_checked(qtbot, panel)
        select_rows(qtbot, browser, [4, 5])
        for width, height in [(1024, 640), (1920, 1080)]:
            browser.resize(width, height)
            qtbot.waitUntil(lambda: not browser.thumbnails.busy, timeout=10_000)
            qtbot.wait(50)
            problems = layout_problems(browser, (width, height))
            save_screenshot(browser, f"dataset_browser_{width}x{height}_{theme}")
            assert problems == [], f"at {width}x{height}:\n{describe_problems(problems)}"
        save_screenshot(window, f"dataset_browser_panel_{theme}")
        assert widget_problems(panel) == []  # the panel with its View images button
    finally:
        apply_theme("system")


# --------------------------------------------------------------------------- 10,000 images


@pytest.fixture(scope="module")
def ten_thousand_digits(tmp_path_factory):
    """10,000 real 8x8 digit images (sklearn's), saved under different names, ten classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("digits")
    for name in range(10):
        (root / str(name)).mkdir()
    for i in range(10_000):
        j = i % len(digits.images)
        pixels = (digits.images[j] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(root / str(digits.target[j]) / f"digit_{i:05d}.png")
    return root


def test_ten_thousand_images_open_reading_only_the_visible_thumbnails(qtbot, settings, ten_thousand_digits):
    from desktop_tl.gui.data_panel import DataPanel

    panel = DataPanel(settings)
    qtbot.addWidget(panel)
    panel.set_host(LoaderHost())
    panel.show()
    panel.set_path(ten_thousand_digits)
    qtbot.waitUntil(lambda: panel.prepared is not None and not panel.busy, timeout=300_000)
    assert len(panel.prepared.train) + len(panel.prepared.val) == 10_000

    from desktop_tl.gui.dataset_browser import DatasetBrowser

    browser = DatasetBrowser(panel)
    qtbot.addWidget(browser)
    requested: list[str] = []
    original = browser.thumbnails.request

    def counting_request(path: str) -> None:
        requested.append(path)
        original(path)

    browser.thumbnails.request = counting_request
    browser.resize(1100, 760)
    browser.show()
    qtbot.waitExposed(browser)
    qtbot.waitUntil(lambda: len(set(requested)) > 0, timeout=10_000)
    qtbot.wait(100)
    assert browser.model.rowCount() == 10_000
    capacity = browser.grid.visible_capacity()
    assert 0 < len(set(requested)) <= 2 * capacity, (len(set(requested)), capacity)

    # Scroll to the middle: only what is then in view is asked for.
    before = set(requested)
    bar = browser.grid.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=10_000)
    bar.setValue(bar.maximum() // 2)
    qtbot.wait(200)
    new = set(requested) - before
    assert 0 < len(new) <= 2 * capacity, (len(new), capacity)
    middle = browser.grid.indexAt(QPoint(20, 20)).row()
    assert 3_000 < middle < 7_000
    qtbot.waitUntil(lambda: not browser.thumbnails.busy, timeout=20_000)
    assert browser.thumbnails.image(browser.model.item(middle).path) is not None
    save_screenshot(browser, "dataset_browser_10000_images")

    # Leaving an image out there keeps the place: same scroll position, the tile dimmed.
    viewport = browser.grid.viewport()
    row = browser.grid.indexAt(viewport.rect().center()).row()  # a tile wholly in view
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport.rect().center())
    chosen = browser.model.item(row)
    position = bar.value()
    qtbot.mouseClick(browser.leave_out_button, Qt.MouseButton.LeftButton)
    assert bar.value() == position and browser.model.is_left_out(chosen)
    qtbot.waitUntil(lambda: panel.prepared is not None and not panel.busy, timeout=300_000)
    assert bar.value() == position
    now = browser.model.item(row)
    assert now.key == chosen.key and now.subset == "excluded" and browser.model.is_left_out(now)
    assert [item.key for item in browser.selected_items()] == [chosen.key]
    assert len(panel.prepared.train) + len(panel.prepared.val) == 9_999
    assert panel.excluded_images() == [chosen.key]
