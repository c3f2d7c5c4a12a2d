"""WorkerPool: results come back, and a failing, dying or hanging worker never hangs the parent."""

from __future__ import annotations

import time

import pytest
import worker_tasks as tasks

from common.workers import WorkerError, WorkerPool


def test_results_come_back_with_their_keys():
    with WorkerPool(2) as pool:
        for i in range(6):
            pool.submit(i, tasks.square, i)
        results = dict(pool.next_result() for _ in range(6))
        assert pool.pending == 0
    assert results == {i: i * i for i in range(6)}


def test_exception_in_task_is_raised_with_its_message():
    with WorkerPool(1) as pool:
        pool.submit("bad", tasks.fail, "env exploded")
        with pytest.raises(WorkerError, match="env exploded") as info:
            pool.next_result()
        assert info.value.key == "bad"


def test_dead_worker_is_replaced_and_task_retried(tmp_path):
    reports = []
    with WorkerPool(2, log=reports.append) as pool:
        pool.submit("a", tasks.die_once, str(tmp_path / "marker"), 7)
        pool.submit("b", tasks.square, 3)
        results = dict(pool.next_result() for _ in range(2))
    assert results == {"a": 7, "b": 9}
    assert len(reports) == 1 and "died (exit code 3)" in reports[0] and "'a'" in reports[0]


def test_worker_that_keeps_dying_fails_the_task():
    with WorkerPool(1, max_retries=1, log=lambda m: None) as pool:
        pool.submit("doomed", tasks.always_die)
        with pytest.raises(WorkerError, match="failed 2 times.*exit code 4"):
            pool.next_result()


def test_hung_task_is_killed_and_retried(tmp_path):
    reports = []
    started = time.monotonic()
    with WorkerPool(1, task_timeout=2.0, log=reports.append) as pool:
        pool.submit("slow", tasks.hang_once, str(tmp_path / "marker"), 60)
        assert pool.next_result() == ("slow", "done")
    assert time.monotonic() - started < 30
    assert "longer than 2 s" in reports[0]


def test_task_that_always_hangs_stops_cleanly():
    started = time.monotonic()
    with WorkerPool(1, task_timeout=1.0, max_retries=0) as pool:
        pool.submit("stuck", tasks.sleep, 60)
        with pytest.raises(WorkerError, match="longer than 1 s"):
            pool.next_result()
    assert time.monotonic() - started < 30


def test_failing_initializer_fails_tasks_with_its_error():
    with WorkerPool(1, initializer=tasks.broken_initializer) as pool:
        pool.submit("t", tasks.square, 2)
        with pytest.raises(WorkerError, match="initializer raised RuntimeError: cannot load the model") as info:
            pool.next_result()
    assert "Traceback" in info.value.details and "\n" not in str(info.value)
