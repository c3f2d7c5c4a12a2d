"""The Ray backend's pool: WorkerPool's contract (submit, results as they finish, retry once) on a cluster.

One Ray actor per worker runs the initializer once and keeps what it loaded (env, V, M) for its whole
life, like a local worker process; each task is one method call on an idle actor, and `ray.wait`
returns results in the order they finish. Failures get the local pool's answers:

- the task raises: WorkerError in the driver, with the worker's traceback;
- the actor dies (its process killed, its node lost): a new actor is started and the task retried, up
  to `max_retries` times, each time reported on `log`;
- the task runs past `task_timeout`: its actor is killed (ray.kill) and replaced, and the task retried.

Tasks go only to actors that have started, so a pool larger than the cluster waits for nodes to join
instead of timing out tasks; a pool of which no actor starts within `start_timeout` is an error, not a
hang. Closing the pool (also on Ctrl-C or an error in the driver) kills its actors. The connection to
Ray lasts as long as the driver process (Ray shuts it down at exit, with a Ray it started), so a stage
that opens several pools pays for joining once.

Why not Ray's own retries (max_restarts, max_task_retries): they retry silently and have no timeout on
a call that hangs; this loop reports every retry and bounds every wait.
"""

from __future__ import annotations

import collections
import logging
import os
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.exceptions

from common.errors import UserError
from common.workers import TaskPool, WorkerError, _stderr, _Task

_REPO = Path(__file__).resolve().parents[1]
_NOT_SHIPPED = [".git", ".venv", "venv", "__pycache__", "runs", "docs", "*.npz", "*.pt", "*.gif", "*.mp4"]
_POLL_SECONDS = 1.0
# Raylets this driver starts kill what a dead worker left running (a ViZDoom engine is a child
# process); `ray start` on a cluster should be given the same variable (docs/cluster.md).
RAYLET_ENV = {"RAY_process_group_cleanup_enabled": "true",
              "RAY_USAGE_STATS_ENABLED": "0"}


class _InitializerFailed(RuntimeError):
    pass


class _Host:
    """The actor: a worker process that keeps its initializer's state between tasks."""

    def __init__(self, initializer: Callable[..., None] | None, initargs: tuple) -> None:
        self.broken: str | None = None
        if initializer is not None:
            try:
                initializer(*initargs)
            except Exception as e:  # every task then fails with this, as in the local pool
                self.broken = f"worker initializer raised {type(e).__name__}: {e}\n{traceback.format_exc()}"

    def ready(self) -> str:
        return f"{ray.util.get_node_ip_address()} pid {os.getpid()}"

    def run(self, fn: Callable[..., Any], args: tuple) -> Any:
        if self.broken is not None:
            raise _InitializerFailed(self.broken)
        return fn(*args)


@dataclass
class _Call:
    actor: Any
    task: _Task
    started: float


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or (None) a Ray on this machine, starting one if none runs."""
    if ray.is_initialized():
        return
    for name, value in RAYLET_ENV.items():
        os.environ.setdefault(name, value)
    # Our list names Ray's default excludes itself, so Ray need not warn on every start that it drops them.
    os.environ.setdefault("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True,
                 runtime_env={"working_dir": str(_REPO), "excludes": _NOT_SHIPPED})
    except ConnectionError as e:
        raise UserError(f"--ray_address {address}: cannot join that Ray cluster ({str(e).splitlines()[0]})") from None


class RayPool(TaskPool):
    """Run tasks on `num_workers` Ray actors (None: one per CPU of the cluster)."""

    def __init__(self, num_workers: int | None, initializer: Callable[..., None] | None = None,
                 initargs: tuple = (), task_timeout: float | None = None, max_retries: int = 1,
                 log: Callable[[str], None] | None = None, address: str | None = None,
                 start_timeout: float = 300.0) -> None:
        self._closed = False
        connect(address)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            self._num_workers = num_workers or max(cpus, 1)
            if num_workers is not None and num_workers < 1:
                raise ValueError("num_workers must be >= 1")
            self.task_timeout, self.max_retries, self.start_timeout = task_timeout, max_retries, start_timeout
            self._log = log or _stderr
            if self._num_workers > cpus:
                self._log(f"ray: {self._num_workers} workers asked, the cluster has {cpus} CPUs now; "
                          "the rest start when nodes join")
            self._host = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Host)
            self._initargs = ray.put(initargs)  # sent once, read by every actor
            self._initializer = initializer
            self._queue: collections.deque[_Task] = collections.deque()
            self._starting: dict[Any, Any] = {}  # ready() ref -> actor
            self._idle: list[Any] = []
            self._running: dict[Any, _Call] = {}  # run() ref -> call
            self._waiting_since = time.monotonic()
            for _ in range(self._num_workers):
                self._start_actor()
        except BaseException:
            self.close()
            raise

    # -- the TaskPool interface ------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def close(self) -> None:
        """Kill the actors now (pending tasks are dropped)."""
        if self._closed:
            return
        self._closed = True
        for actor in [*getattr(self, "_idle", []), *getattr(self, "_starting", {}).values(),
                      *(c.actor for c in getattr(self, "_running", {}).values())]:
            _kill(actor)

    # -- internals --------------------------------------------------------------------------------
    def _wait_once(self) -> tuple[Hashable, Any] | None:
        refs = list(self._running) + list(self._starting)
        ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_timeout())
        for ref in ready:
            if ref in self._starting:
                self._started(ref)
                continue
            outcome = self._finished(ref)
            if outcome is not None:
                return outcome
        self._check_deadlines()
        return None

    def _start_actor(self) -> None:
        actor = self._host.remote(self._initializer, self._initargs)
        self._starting[actor.ready.remote()] = actor

    def _started(self, ref: Any) -> None:
        actor = self._starting.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayError as e:
            self._log(f"ray: a worker failed to start ({_first_line(e)}); starting another")
            _kill(actor)
            self._start_actor()
            return
        self._idle.append(actor)
        self._waiting_since = time.monotonic()

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            actor, task = self._idle.pop(), self._queue.popleft()
            task.attempts += 1
            self._running[actor.run.remote(task.fn, task.args)] = _Call(actor, task, time.monotonic())

    def _finished(self, ref: Any) -> tuple[Hashable, Any] | None:
        call = self._running.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task itself raised
            cause = getattr(e, "cause", None) or e
            summary = str(cause).splitlines()[0] if isinstance(cause, _InitializerFailed) else \
                f"{type(cause).__name__}: {cause}"
            self._idle.append(call.actor)
            raise WorkerError(call.task.key, f"task {call.task.key!r}: {summary}", str(e)) from None
        except ray.exceptions.RayError as e:  # the actor or its node died under the task
            self._replace(call, f"worker died ({_first_line(e)})")
            return None
        self._idle.append(call.actor)
        self._waiting_since = time.monotonic()
        return call.task.key, value

    def _replace(self, call: _Call, why: str) -> None:
        _kill(call.actor)
        self._start_actor()
        call.task.check_retry(self.max_retries, why)
        self._log(f"ray: {why} while running task {call.task.key!r}; started a new worker and retrying")
        self._queue.appendleft(call.task)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self.task_timeout is not None:
            for ref, call in list(self._running.items()):
                if now - call.started > self.task_timeout:
                    del self._running[ref]
                    self._replace(call, f"task ran longer than {self.task_timeout:g} s")
        if not self._idle and not self._running and now - self._waiting_since > self.start_timeout:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            raise WorkerError(None, f"ray: no worker started within {self.start_timeout:g} s (the cluster has "
                                    f"{cpus} CPUs; each worker needs 1)")

    def _wait_timeout(self) -> float:
        if self.task_timeout is None or not self._running:
            return _POLL_SECONDS
        now = time.monotonic()
        soonest = min(c.started + self.task_timeout - now for c in self._running.values())
        return min(_POLL_SECONDS, max(0.0, soonest) + 0.01)


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already dead, or the cluster is gone: nothing left to stop
        pass


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
