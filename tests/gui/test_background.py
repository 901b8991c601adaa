"""Background work on superqt's workers: results, progress and errors arrive on the GUI
thread, cancelling drops what a task still reports, and only the latest request counts."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
import warnings

import pytest
from PIL import Image
from PySide6.QtCore import QObject

from desktop_tl.gui.background import JobQueue, LatestRequest, cancel_and_wait_all, run_in_background
from desktop_tl.gui.thumbnails import ThumbnailLoader


def test_progress_and_result_arrive_on_the_gui_thread_in_order(qtbot):
    gui = threading.current_thread()
    seen: list[tuple] = []
    workers: list[threading.Thread] = []

    def count(task):
        workers.append(threading.current_thread())
        for i in range(3):
            task.report_progress(i + 1, 3, "counting")
        return "done"

    def on_progress(done, total, message):
        seen.append(("progress", done, total, message, threading.current_thread() is gui))

    def on_result(value):
        seen.append(("result", value, threading.current_thread() is gui))

    task = run_in_background(count, on_result=on_result, on_progress=on_progress)
    qtbot.waitUntil(lambda: any(item[0] == "result" for item in seen), timeout=10_000)
    assert workers and workers[0] is not gui
    assert seen == [("progress", i, 3, "counting", True) for i in (1, 2, 3)] + [("result", "done", True)]
    assert task.wait(5_000)


def test_a_task_started_inside_the_event_loop_can_be_waited_for_at_once(qtbot):
    """Closing the window starts nothing new but waits for what runs: a task begun on the
    same turn of the event loop must already be on its way, not waiting for the next."""
    from PySide6.QtCore import QTimer

    outcome: list[bool] = []

    def start_and_wait() -> None:
        task = run_in_background(lambda _task: 42)
        outcome.append(task.wait(5_000))

    QTimer.singleShot(0, start_and_wait)
    qtbot.waitUntil(lambda: bool(outcome), timeout=10_000)
    assert outcome == [True]


def test_an_error_comes_with_its_traceback(qtbot):
    failures: list[tuple] = []

    def broken(_task):
        raise ValueError("the images folder is empty")

    run_in_background(broken, on_error=lambda exc, tb: failures.append((exc, tb)))
    qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
    exc, tb = failures[0]
    assert isinstance(exc, ValueError) and str(exc) == "the images folder is empty"
    assert "in broken" in tb and "ValueError" in tb


def test_cancel_asks_the_function_to_stop_and_drops_its_result(qtbot):
    started = threading.Event()
    results: list = []

    def until_stopped(task):
        started.set()
        while not task.should_stop():
            threading.Event().wait(0.01)
        return "stopped"

    task = run_in_background(until_stopped, on_result=results.append)
    assert started.wait(10)
    assert cancel_and_wait_all(10_000)
    assert task.cancelled
    qtbot.wait(100)  # anything it still sent has been delivered by now
    assert results == []


def test_overlapping_workers_leave_the_warnings_module_as_it_was(qtbot):
    """Two tasks whose runs overlap, each warning; afterwards warnings are shown as
    before (superqt's own run() would leave one task's handler installed)."""
    original = warnings.showwarning
    first_started = threading.Event()
    second_started = threading.Event()
    first_may_end = threading.Event()
    results: list[str] = []

    def first(_task):
        first_started.set()
        second_started.wait(10)
        warnings.warn("first", UserWarning, stacklevel=1)
        first_may_end.wait(10)
        return "first"

    def second(_task):
        second_started.set()
        first_started.wait(10)
        warnings.warn("second", UserWarning, stacklevel=1)
        first_may_end.set()  # the first ends while the second still runs
        threading.Event().wait(0.05)
        return "second"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_in_background(first, on_result=results.append)
        run_in_background(second, on_result=results.append)
        qtbot.waitUntil(lambda: len(results) == 2, timeout=10_000)
        assert cancel_and_wait_all(10_000)
        warnings.warn("after", UserWarning, stacklevel=1)
    assert warnings.showwarning is original
    assert sorted(str(w.message) for w in caught) == ["after", "first", "second"]


def test_job_queue_runs_one_job_at_a_time_in_order(qtbot):
    owner = QObject()
    queue = JobQueue(owner)
    active = 0
    most_active = 0
    lock = threading.Lock()
    results: list[int] = []

    def job(i: int) -> int:
        nonlocal active, most_active
        with lock:
            active += 1
            most_active = max(most_active, active)
        threading.Event().wait(0.02)
        with lock:
            active -= 1
        return i

    for i in range(5):
        queue.submit(job, i, on_result=results.append)
    assert queue.busy
    qtbot.waitUntil(lambda: len(results) == 5, timeout=10_000)
    assert results == [0, 1, 2, 3, 4]
    assert most_active == 1
    assert not queue.busy


def test_job_queue_cancel_pending_drops_waiting_and_running_jobs(qtbot):
    queue = JobQueue()
    release = threading.Event()
    results: list[str] = []
    queue.submit(release.wait, 10, on_result=lambda _ok: results.append("first"))
    queue.submit(lambda: "second", on_result=results.append)
    queue.cancel_pending()
    assert not queue.busy
    release.set()
    queue.submit(lambda: "third", on_result=results.append)
    qtbot.waitUntil(lambda: results == ["third"], timeout=10_000)
    qtbot.wait(50)
    assert results == ["third"]


def test_closing_waits_for_the_job_running_and_drops_the_waiting_ones(qtbot):
    queue = JobQueue()
    started, release = threading.Event(), threading.Event()
    ran: list = []

    def slow() -> None:
        started.set()
        release.wait(10)
        ran.append("slow")

    queue.submit(slow)
    for i in range(5):
        queue.submit(lambda i=i: ran.append(i))
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    # what the window does when it closes: no job is left running once the app goes
    assert cancel_and_wait_all(10_000)
    assert ran == ["slow"]  # the one running finished; the waiting ones never started
    assert queue.wait(0) and not queue.busy


def test_a_deleted_owner_is_never_called_back(qtbot):
    import shiboken6

    owner = QObject()
    queue = JobQueue(owner)
    release = threading.Event()
    calls: list = []
    queue.submit(release.wait, 10, on_result=calls.append)
    shiboken6.delete(owner)  # the widget goes away while its job still runs
    release.set()
    assert queue.wait(10_000)
    qtbot.wait(100)
    assert calls == []


def test_job_queue_reports_failures(qtbot):
    queue = JobQueue()
    failures: list = []

    def broken():
        raise OSError("disk unplugged")

    queue.submit(broken, on_error=failures.append)
    qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
    assert str(failures[0]) == "disk unplugged"
    assert "OSError" in failures[0].traceback


def test_latest_request_ignores_answers_to_older_requests():
    latest = LatestRequest()
    answers: list[str] = []
    first = latest.begin()
    on_first = first.only_current(answers.append)
    second = latest.begin()
    on_second = second.only_current(answers.append)
    on_first("old folder")
    on_second("new folder")
    assert answers == ["new folder"]
    assert second.current and not first.current
    latest.drop()
    on_second("after cancel")
    assert answers == ["new folder"]


def test_thumbnails_are_read_off_the_gui_thread_and_cached(qtbot, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (300, 150), (200, 30, 30)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    loader = ThumbnailLoader(64)
    ready: list[str] = []
    failed: list[tuple[str, str]] = []
    loader.ready.connect(ready.append)
    loader.failed.connect(lambda path, reason: failed.append((path, reason)))
    loader.request(str(good))
    loader.request(str(bad))
    loader.request(str(good))  # asked twice, read once
    qtbot.waitUntil(lambda: bool(ready) and bool(failed), timeout=10_000)
    assert ready == [str(good)]
    image = loader.image(str(good))
    assert (image.width(), image.height()) == (64, 32)
    assert failed[0][0] == str(bad) and failed[0][1]
    assert loader.error(str(bad)) == failed[0][1]


@pytest.fixture(autouse=True)
def _no_task_left_behind():
    yield
    assert cancel_and_wait_all(10_000)
