"""CMA-ES (the `cma` package) with a save/resume that cannot be turned into code execution.

The optimizer's full state is the pickled `cma.CMAEvolutionStrategy`: restoring mean, step size,
covariance and evolution paths by hand would break with every cma release. Pickles can run code, so
loading uses an unpickler that only admits classes from `cma` and `numpy` and a few plain builtins.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.errors import DataError

with warnings.catch_warnings():  # cma warns at import when matplotlib is absent; we plot with Pillow
    warnings.simplefilter("ignore")
    import cma

_SAFE_BUILTINS = {"getattr", "object", "dict", "list", "set", "frozenset", "tuple", "slice", "range",
                  "complex", "float", "int", "bool", "str", "bytes", "bytearray"}
_SAFE_MODULE_PREFIXES = ("cma", "numpy")
_SAFE_OTHER = {("collections", "OrderedDict"), ("collections", "defaultdict"), ("copyreg", "_reconstructor")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        allowed = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or module.split(".")[0] in _SAFE_MODULE_PREFIXES
            or (module, name) in _SAFE_OTHER
        )
        if not allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


class CMAES:
    """Maximizes fitness (the `cma` package minimizes, so we hand it the negated values)."""

    def __init__(self, num_params: int, sigma_init: float = 0.1, popsize: int = 64, seed: int = 0) -> None:
        options = {"popsize": popsize, "seed": seed + 1, "verbose": -9}  # cma treats seed 0 as "random"
        self.es = cma.CMAEvolutionStrategy(np.zeros(num_params), sigma_init, options)

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

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(pickle.dumps(self.es, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: str | Path) -> CMAES:
        try:
            es = _RestrictedUnpickler(io.BytesIO(Path(path).read_bytes())).load()
        except Exception as e:  # a truncated or foreign file fails in many ways
            raise DataError(f"{path}: corrupt or not a CMA-ES state ({type(e).__name__}: {e})") from None
        if not isinstance(es, cma.CMAEvolutionStrategy):
            raise DataError(f"{path}: not a CMA-ES state")
        self = cls.__new__(cls)
        self.es = es
        return self
