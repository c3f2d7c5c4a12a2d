"""A small process pool that never hangs: dead or stuck workers are detected, reported and replaced.

Why not multiprocessing.Pool: a worker that segfaults (VizDoom, Box2D) makes Pool wait forever, and
ProcessPoolExecutor cannot kill a task that hangs. Here the parent waits on every worker's pipe *and*
process sentinel with a deadline, so each failure mode has an answer:

- the task raises: the exception (with the worker's traceback) is raised in the parent as WorkerError;
- the worker process dies: it is restarted and the task retried, up to `max_retries` times;
- the task runs past `task_timeout`: the worker is killed, restarted and the task retried likewise.

Each worker leads its own process group, so whatever it started (ViZDoom runs its engine as a child
process) is killed with it instead of living on as an orphan; and it asks Linux to signal it when the
parent dies, so a killed run leaves no workers behind. Deaths are found by polling exit codes too,
because a child of the worker may hold the pipes that would otherwise tell us.

Task functions and their arguments must be picklable (module-level functions), as with any spawn pool.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Self

from tqdm import tqdm

_CTX = multiprocessing.get_context("spawn")
_POLL_SECONDS = 1.0  # how often exit codes are checked when no pipe says anything


class WorkerError(RuntimeError):
    """A task failed for good; `key` names it and the message says how."""

    def __init__(self, key: Hashable, message: str, details: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.details = details  # the worker's traceback, when there is one


@dataclass
class _Task:
    key: Hashable
    fn: Callable[..., Any]
    args: tuple
    attempts: int = 0

    def check_retry(self, max_retries: int, why: str) -> None:
        """The rule both pools apply when a worker is lost under this task: retry, or fail it for good."""
        if self.attempts > max_retries:
            raise WorkerError(self.key, f"task {self.key!r} failed {self.attempts} times; last: {why}")


class TaskPool:
    """What stages need from a pool, and what both pools share: WorkerPool here, common.ray_pool.RayPool
    on a cluster. Submitted tasks wait in `_queue` until `_dispatch` hands them to idle workers, and
    `next_result` waits round after round (`_wait_once`) until one finishes. A pool fills in those two
    steps, `pending`, `num_workers` and `close`."""

    _queue: collections.deque[_Task]

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet returned by next_result()."""
        raise NotImplementedError

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.append(_Task(key, fn, args))
        self._dispatch()

    def next_result(self) -> tuple[Hashable, Any]:
        """Block until some task finishes; return (key, result) or raise WorkerError."""
        if self.pending == 0:
            raise RuntimeError("next_result() with no pending task")
        while True:
            self._dispatch()
            outcome = self._wait_once()
            if outcome is not None:
                return outcome

    @property
    def num_workers(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers now (pending tasks are dropped)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dispatch(self) -> None:
        """Start queued tasks on idle workers."""
        raise NotImplementedError

    def _wait_once(self) -> tuple[Hashable, Any] | None:
        """Wait (boundedly) for the running tasks; a finished task's (key, result), or None for another round."""
        raise NotImplementedError


@dataclass
class _Worker:
    process: Any
    conn: Any
    task: _Task | None = None
    started: float = field(default_factory=time.monotonic)


def _single_threaded_env() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _kill_own_group(*_: object) -> None:
    os.killpg(os.getpid(), signal.SIGKILL)


def sigterm_when_parent_dies() -> None:
    """Linux: have the kernel send this process SIGTERM when its parent dies (elsewhere: nothing)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _die_with_parent() -> None:
    """SIGTERM when the parent dies; the handler takes the worker's whole group down."""
    signal.signal(signal.SIGTERM, _kill_own_group)
    sigterm_when_parent_dies()  # not Linux: the EOF on the pipe still ends the worker
    if os.getppid() == 1:  # the parent died before prctl took effect
        _kill_own_group()


def _worker_main(conn: Any, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.setpgid(0, 0)
    _die_with_parent()
    _single_threaded_env()
    try:
        parent_gone = _serve(conn, initializer, initargs)
    finally:
        conn.close()  # the parent then kills what is left of this process group (see _kill_group)
    if parent_gone:
        # The parent died: its exit closes the pipe before the kernel sends PR_SET_PDEATHSIG, so a
        # worker that just returned could beat that signal and orphan its game engine.
        _kill_own_group()


def _serve(conn: Any, initializer: Callable[..., None] | None, initargs: tuple) -> bool:
    """Run tasks until the parent says stop (False) or the pipe breaks because it died (True)."""
    broken = None  # a failed initializer fails every task with its error, instead of a silent exit
    if initializer is not None:
        try:
            initializer(*initargs)
        except Exception as e:
            broken = (f"worker initializer raised {type(e).__name__}: {e}", traceback.format_exc())
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return True
        if message is None:
            return False
        fn, args = message
        if broken is not None:
            conn.send((False, broken))
            continue
        try:
            reply = (True, fn(*args))
        except BaseException as e:  # report everything; the parent decides
            reply = (False, (f"{type(e).__name__}: {e}", traceback.format_exc()))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return True


class WorkerPool(TaskPool):
    """Run tasks on `num_workers` spawn processes; collect results with `next_result()`.

    `log` receives one-line reports of deaths, timeouts and restarts (default: stderr, tqdm-safe).
    """

    def __init__(
        self,
        num_workers: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple = (),
        task_timeout: float | None = None,
        max_retries: int = 1,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self.task_timeout = task_timeout
        self.max_retries = max_retries
        self._initializer = initializer
        self._initargs = initargs
        self._log = log or _stderr
        self._queue: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = [self._start_worker() for _ in range(num_workers)]
        self._closed = False

    # -- public API ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._queue) + sum(w.task is not None for w in self._workers)

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def close(self) -> None:
        """Stop all workers now (pending tasks are dropped)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w.task is None and w.process.is_alive():
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        deadline = time.monotonic() + 2.0
        for w in self._workers:
            if w.task is None:
                w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            _kill_group(w.process)
            w.conn.close()
        self._queue.clear()

    # -- internals ----------------------------------------------------------------------------
    def _wait_once(self) -> tuple[Hashable, Any] | None:
        busy = [w for w in self._workers if w.task is not None]
        waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = multiprocessing.connection.wait(waitables, timeout=self._wait_timeout(busy))
        for worker in busy:
            if worker.conn in ready:
                outcome = self._receive(worker)
                if outcome is not None:
                    return outcome
            elif worker.process.sentinel in ready or not worker.process.is_alive():
                self._replace(worker, self._death_report(worker))
        now = time.monotonic()
        for worker in busy:
            if worker.task is not None and self._overdue(worker, now):
                _kill_group(worker.process)
                worker.process.join()
                self._replace(worker, f"task ran longer than {self.task_timeout:g} s")
        return None

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = _CTX.Pipe()
        process = _CTX.Process(
            target=_worker_main, args=(child_conn, self._initializer, self._initargs), daemon=True
        )
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker.task is None:
                task = self._queue.popleft()
                task.attempts += 1
                worker.task = task
                worker.started = time.monotonic()
                try:
                    worker.conn.send((task.fn, task.args))
                except (BrokenPipeError, OSError):
                    pass  # the sentinel reports the death on the next wait

    def _receive(self, worker: _Worker) -> tuple[Hashable, Any] | None:
        task = worker.task
        try:
            ok, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._replace(worker, self._death_report(worker))
            return None
        worker.task = None
        if not ok:
            summary, details = payload
            raise WorkerError(task.key, f"task {task.key!r}: {summary}", details)
        return task.key, payload

    @staticmethod
    def _death_report(worker: _Worker) -> str:
        worker.process.join(timeout=5)  # reap it, so the exit code is known
        return f"worker process died (exit code {worker.process.exitcode})"

    def _replace(self, worker: _Worker, why: str) -> None:
        task = worker.task
        worker.task = None
        _kill_group(worker.process)
        worker.conn.close()
        fresh = self._start_worker()
        worker.process, worker.conn, worker.started = fresh.process, fresh.conn, fresh.started
        if task is None:
            return
        task.check_retry(self.max_retries, why)
        self._log(f"worker: {why} while running task {task.key!r}; restarted it and retrying")
        self._queue.appendleft(task)

    def _overdue(self, worker: _Worker, now: float) -> bool:
        return self.task_timeout is not None and now - worker.started > self.task_timeout

    def _wait_timeout(self, busy: list[_Worker]) -> float:
        if self.task_timeout is None or not busy:
            return _POLL_SECONDS
        now = time.monotonic()
        return min(_POLL_SECONDS, max(0.0, min(w.started + self.task_timeout - now for w in busy)) + 0.01)


def _kill_group(process: Any) -> None:
    """SIGKILL what is left of a worker's process group (e.g. a game engine it started), and the worker itself:
    one stopped within its first moments (a tiny --worker_timeout) may not lead its own group yet, and a
    join() on it would then wait forever."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
        process.kill()


def _stderr(message: str) -> None:
    """To stderr, without tearing a tqdm progress bar that may be on screen."""
    tqdm.write(message, file=sys.stderr)
