"""CMA-ES (the `cma` package) whose saved state is plain numbers and arrays, so loading it cannot run code.

A state file is an .npz of numeric arrays plus one JSON member (no pickles anywhere: np.load refuses
them). Loading builds a fresh `cma.CMAEvolutionStrategy` from our own options and the four numbers that
define it (dimension, popsize, sigma0, seed), then writes the saved values into a fixed list of its
attributes: everything `ask` and `tell` change. Nothing in the file names a class, a function or an
attribute outside that list, and every value is checked for type and shape before it is used.

The sampler draws from a RandomState of its own (the same MT19937 stream `cma` would draw from the global
one with this seed), saved with the rest, so a resumed run follows the same history as an unbroken one
whatever else in the process uses numpy's global generator.
"""

from __future__ import annotations

import io
import json
import math
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path
from common.errors import DataError

with warnings.catch_warnings():  # cma warns at import when matplotlib is absent; we plot with Pillow
    warnings.simplefilter("ignore")
    import cma

STATE_FORMAT = "worldmodels-cmaes"
STATE_VERSION = 1
_META_KEY = "meta"

# Attribute paths (from the CMAEvolutionStrategy) that ask/tell change, with the shape each must have:
# N = dimension, P = popsize, "*" = a 1-d list that grows, "" = a number; any of them may be None.
# cma adapts sigma by CSA for small dimensions and by TPA (two-point adaptation) from a few hundred on (both
# paper controllers): TPA's state is its `s` and `_last_z`, plus the mean-shift directions `tell` leaves for
# the next `ask`, which load() recomputes from the saved means as tell does.
_STATE_SHAPES: dict[str, str] = {
    "sigma": "", "_sigma_old": "", "countiter": "", "countevals": "", "itereigenupdated": "",
    "_isotropic_mean_shift_iteration": "", "number_of_injections": "", "evaluations_per_f_value": "",
    "mean": "N", "mean_after_tell": "N", "mean_old": "N", "mean_old_old": "N", "_isotropic_mean_shift": "N",
    "pc": "N", "pc2": "N", "pc_neg": "N", "pop_sorted": "PN", "ary": "PN", "_is_independent_sample": "P",
    "sm.C": "NN", "sm.B": "NN", "sm.D": "N", "sm.last_update": "", "sm.count_tell": "", "sm.count_eigen": "",
    "adapt_sigma.ps": "N", "adapt_sigma.delta": "", "adapt_sigma._last_multiplier": "",
    "adapt_sigma._ps_updated_iteration": "", "adapt_sigma.s": "", "adapt_sigma._last_z": "",
    "sent_solutions.last_iteration": "", "sent_solutions.last_solution_index": "",
    "best.x": "N", "best.x_geno": "N", "best.f": "", "best.evals": "", "best.evalsall": "", "best.compared": "",
    "best.last.x": "N", "best.last.f": "",
    "_stoptolxstagnation.x": "N", "_stoptolxstagnation.count": "", "_stoptolxstagnation.count_x": "",
    "fit.fit": "P", "fit.bndpen": "P", "fit.fit_plus_pen": "P", "fit.idx": "P", "fit.hist": "*",
    "fit.histbest": "*", "fit.histmedian": "*", "fit.median": "", "fit.median0": "", "fit.median_min": "",
    "fit.median_previous": "", "fit.median_got_worse": "", "fit.flatfit_iterations": "",
}
_MISSING = object()


class CMAES:
    """Maximizes fitness (the `cma` package minimizes, so we hand it the negated values)."""

    def __init__(self, num_params: int, sigma_init: float = 0.1, popsize: int = 64, seed: int = 0,
                 x0: np.ndarray | None = None) -> None:
        """`x0`: the initial mean (default zero, as the reference), e.g. a trained controller to fine-tune."""
        self.num_params, self.sigma_init, self.seed = int(num_params), float(sigma_init), int(seed)
        self.x0 = np.zeros(self.num_params) if x0 is None else np.array(x0, np.float64).reshape(self.num_params)
        self.rng = np.random.RandomState(seed + 1)  # cma's own seeding treats 0 as "random"
        # No selective mirrors (cma's default below a population of 6): their bookkeeping is not in the saved
        # state, so such a run could not resume; from 6 on, cma uses none anyway.
        options = {"popsize": popsize, "randn": self.rng.randn, "seed": math.nan, "verbose": -9, "CMA_mirrors": 0}
        self.es = cma.CMAEvolutionStrategy(self.x0.copy(), sigma_init, options)

    @property
    def popsize(self) -> int:
        return self.es.popsize

    @property
    def generation(self) -> int:
        return self.es.countiter

    @property
    def mean(self) -> np.ndarray:
        """The distribution mean (xfavorite): what the reference evaluates and saves as 'best'."""
        return np.asarray(self.es.result.xfavorite, np.float64)

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    @property
    def rms_stdev(self) -> float:
        return float(np.mean(self.es.result.stds))

    def ask(self) -> np.ndarray:
        return np.asarray(self.es.ask(), np.float64)

    def tell(self, solutions: np.ndarray, fitness: np.ndarray) -> None:
        self.es.tell(list(solutions), (-np.asarray(fitness, np.float64)).tolist())

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write the state (and `extra`, any JSON-able dict the caller wants back on load) atomically."""
        scalars: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for name in _STATE_SHAPES:
            value = _get(self.es, name)
            if value is _MISSING:
                continue  # not created yet (cma makes some attributes at the first tell)
            if isinstance(value, (np.ndarray, list, tuple)):
                arrays[name] = np.asarray(value)
                scalars[name] = "list" if isinstance(value, (list, tuple)) else "array"
            else:
                scalars[name] = value.item() if isinstance(value, np.generic) else value
        kind, keys, pos, has_gauss, cached_gaussian = self.rng.get_state()
        arrays["rng.keys"] = np.asarray(keys, np.uint32)
        if self.x0.any():  # states of runs started at zero stay as they were
            arrays["x0"] = self.x0
        meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "num_params": self.num_params,
                "popsize": self.popsize, "sigma_init": self.sigma_init, "seed": self.seed,
                "rng": {"pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
                "state": scalars, "extra": dict(extra or {})}
        buffer = io.BytesIO()
        np.savez(buffer, **{_META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, num_params: int | None = None) -> tuple[CMAES, dict[str, Any]]:
        """The saved optimizer and the `extra` dict saved with it; DataError (one line) for anything else.

        `num_params`: the dimension the caller's controller has, checked before anything of that size is built
        (a file claiming a huge dimension would otherwise allocate its N x N covariance first)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                files = {name: npz[name] for name in npz.files}
            meta = json.loads(bytes(files.pop(_META_KEY)).decode())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise DataError(f"{path}: corrupt or not a CMA-ES state ({type(e).__name__}: {str(e)[:200]})") from None
        try:
            return cls._from_plain(meta, files, num_params)
        except _Invalid as e:
            raise DataError(f"{path}: not a valid CMA-ES state ({e})") from None

    @classmethod
    def _from_plain(cls, meta: Any, arrays: dict[str, np.ndarray],
                    num_params: int | None) -> tuple[CMAES, dict[str, Any]]:
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise _Invalid("not written by this project's CMA-ES")
        if meta.get("version") != STATE_VERSION:
            raise _Invalid(f"state version {meta.get('version')!r}, this code reads {STATE_VERSION}")
        n, popsize = (_int(meta.get(k), k, 1, 10**7) for k in ("num_params", "popsize"))
        if num_params is not None and n != num_params:
            raise _Invalid(f"num_params {n}, this run's controller has {num_params}")
        seed = _int(meta.get("seed"), "seed", 0, 2**31)
        sigma_init = _number(meta.get("sigma_init"), "sigma_init")
        if not sigma_init > 0 or not math.isfinite(sigma_init):
            raise _Invalid(f"sigma_init {sigma_init!r}")
        x0 = _checked_array(arrays["x0"], "N", {"N": n}, "x0") if "x0" in arrays else None
        if x0 is not None and not np.isfinite(x0).all():
            raise _Invalid("x0 is not finite")
        self = cls(n, sigma_init, popsize, seed, x0)
        state, extra, rng = meta.get("state"), meta.get("extra", {}), meta.get("rng")
        if not isinstance(state, dict) or not isinstance(extra, dict) or not isinstance(rng, dict):
            raise _Invalid("missing state, rng or extra")
        dims = {"N": n, "P": popsize}
        for name, value in state.items():
            if name not in _STATE_SHAPES:
                raise _Invalid(f"unknown entry {name!r}")
            shape = _STATE_SHAPES[name]
            if value in ("array", "list"):
                if name not in arrays or not shape:
                    raise _Invalid(f"{name}: array missing or not expected")
                data = _checked_array(arrays[name], shape, dims, name, allow_empty=value == "list")
                _set(self.es, name, data.tolist() if value == "list" else data.copy())
            elif value is not None and (shape or not isinstance(value, (bool, int, float))):
                raise _Invalid(f"{name}: expected {'an array' if shape else 'a number'}")
            else:
                _set(self.es, name, value)
        self.es._updateBDfromSM()  # C, B, D and dC of the strategy are the sampler's
        if self.es.countiter > 0 and self.es.mean_shift_samples:  # what tell left for the next ask (TPA)
            self.es.pop_injection_directions = []
            self.es._prepare_injection_directions()
        if self.es.countiter > 0:  # cma's wall-clock timer (no effect on results) starts at the first ask
            self.es.timer = cma.utilities.utils.ElapsedWCTime()
            self.es.timer.pause()
        keys = _checked_array(arrays.get("rng.keys", np.zeros(0)), "624", {}, "rng.keys")
        if keys.dtype != np.uint32:
            raise _Invalid("rng.keys must be uint32")
        self.rng.set_state(("MT19937", keys, _int(rng.get("pos"), "rng.pos", 0, 624),
                            _int(rng.get("has_gauss"), "rng.has_gauss", 0, 1),
                            _number(rng.get("cached_gaussian"), "rng.cached_gaussian")))
        return self, extra


class _Invalid(Exception):
    pass


def _get(obj: Any, name: str) -> Any:
    for part in name.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            break
    return obj


def _set(obj: Any, name: str, value: Any) -> None:
    *parents, last = name.split(".")
    for part in parents:
        obj = getattr(obj, part, None)
        if obj is None:  # another cma version may have moved it; the pin keeps this from happening
            raise _Invalid(f"{name}: this cma version has no such attribute")
    setattr(obj, last, value)


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Invalid(f"{name} {value!r} is not a whole number in [{low}, {high}]")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{name} {value!r} is not a number")
    return float(value)


def _checked_array(array: np.ndarray, shape: str, dims: dict[str, int], name: str,
                   allow_empty: bool = False) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise _Invalid(f"{name}: dtype {array.dtype} is not numeric")
    if shape == "*":
        expected = array.shape if array.ndim == 1 else (-1,)
    else:
        expected = (int(shape),) if shape.isdigit() else tuple(dims[c] for c in shape)
    if array.shape != expected and not (allow_empty and array.shape == (0,)):
        raise _Invalid(f"{name}: shape {array.shape}, expected {expected}")
    return array
