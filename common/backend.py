"""Where episode tasks run: this machine's worker processes (`local`) or a Ray cluster (`ray`).

One interface behind both (common.workers.TaskPool): submit a task, take results as they finish; a
worker that dies or overruns the task timeout is replaced and its task retried once, and reported.
Stages fan episodes out through `Backend.pool()` and never ask which backend they got. Results do not
depend on it either: every task carries its own seed, so stage 01 writes the same files and stage 05
follows the same CMA-ES history on one machine or a hundred.

What crosses the network on Ray, and why: tasks carry a few numbers (seed, controller parameters as a
small float32 array) and return a few numbers (score, length) or, for stage 01, the finished episode
file's bytes, which the driver writes into its own folder. Files a worker needs (V and M checkpoints)
go out once per worker as bytes (`ship`). So the nodes need the same Python environment and nothing
else: no shared disk, no copy of the experiment folder. The code itself travels as Ray's working_dir.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import write_bytes_atomic
from common.errors import UserError
from common.workers import TaskPool, WorkerPool

BACKENDS = ("local", "ray")
RAY_INSTALL = "pip install -r requirements-ray.txt"


@dataclass(frozen=True)
class ShippedFile:
    """A file's bytes, sent to a worker that may not see the sender's disk; `local_path()` there."""

    name: str
    data: bytes

    def local_path(self) -> str:
        """Written once per machine (by content) under the temp folder; later workers reuse it."""
        digest = hashlib.sha256(self.data).hexdigest()[:20]
        path = Path(tempfile.gettempdir()) / "worldmodels-shipped" / digest / self.name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, self.data)
        return str(path)


def local_file(file: str | ShippedFile | None) -> str | None:
    """A path to open on this machine, whichever way the file came."""
    return file.local_path() if isinstance(file, ShippedFile) else file


@dataclass(frozen=True)
class Backend:
    name: str = "local"
    address: str | None = None  # ray: the cluster to join (None: a Ray on this machine, started if none runs)

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"

    def pool(self, workers: int | None, initializer: Callable[..., None] | None = None, initargs: tuple = (),
             task_timeout: float | None = None, log: Callable[[str], None] | None = None) -> TaskPool:
        """A pool of `workers` (None: one per CPU of this machine, or of the whole Ray cluster)."""
        if not self.is_ray:
            return WorkerPool(workers or os.cpu_count() or 1, initializer, initargs, task_timeout, log=log)
        require_ray()
        from common.ray_pool import RayPool

        return RayPool(workers, initializer, initargs, task_timeout, log=log, address=self.address)

    def ship(self, path: str | Path | None) -> str | ShippedFile | None:
        """How a worker gets a file: its path (local: same disk) or its bytes (ray: maybe another machine)."""
        if path is None:
            return None
        if not self.is_ray:
            return str(path)
        return ShippedFile(Path(path).name, Path(path).read_bytes())


LOCAL = Backend()


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray() -> None:
    if not ray_available():
        raise UserError(f"--backend ray needs Ray, which is not installed; install it with `{RAY_INSTALL}`")


def add_backend_flags(p: Any) -> None:
    """--backend and --ray_address, for stages that fan episodes out to workers."""
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="where episodes run: local = worker processes on this machine; ray = a Ray cluster "
                        f"(optional: {RAY_INSTALL}; docs/cluster.md); results are the same")
    p.add_argument("--ray_address", default=None,
                   help="with --backend ray: the cluster to join, e.g. auto (the one `ray start` made on this "
                        "node) or HEAD_IP:6379 (default: join a Ray running on this machine, else start one)")


def backend_from_args(args: Any) -> Backend:
    if args.ray_address is not None and args.backend != "ray":
        raise UserError("--ray_address needs --backend ray")
    if args.backend == "ray":
        require_ray()
    return Backend(args.backend, args.ray_address)
