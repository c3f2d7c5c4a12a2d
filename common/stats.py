"""Is a difference in mean score real? Welch's t-test on two sets of episode scores (scipy does the maths).

Every "mean ± std" this project prints or writes uses `sample_std` (ddof 1), the summaries and the Welch
line alike, so the same scores always show the same std.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def sample_std(values) -> float:
    """The sample standard deviation (ddof 1) of `values`; 0.0 for fewer than two values."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


@dataclass(frozen=True)
class Comparison:
    """a vs b: difference of means, its standard error, Welch's t, degrees of freedom and two-sided p."""

    label_a: str
    label_b: str
    mean_a: float
    std_a: float
    n_a: int
    mean_b: float
    std_b: float
    n_b: int
    difference: float
    standard_error: float
    t: float
    df: float
    p: float

    @property
    def ratio(self) -> float:
        return self.mean_a / self.mean_b if self.mean_b else float("nan")

    def line(self) -> str:
        # a ratio only reads as "times better" when both scores are positive (not bin packing's -waste)
        ratio = f" (x{self.ratio:.2f})" if self.mean_a > 0 and self.mean_b > 0 else ""
        return (f"{self.label_a} {self.mean_a:.1f} ± {self.std_a:.1f} (n {self.n_a}) vs {self.label_b} "
                f"{self.mean_b:.1f} ± {self.std_b:.1f} (n {self.n_b}): difference {self.difference:+.1f} "
                f"± {self.standard_error:.1f}{ratio}, Welch t {self.t:.2f}, df {self.df:.0f}, "
                f"p {self.p:.2g}")


def welch(a: np.ndarray, b: np.ndarray, label_a: str = "a", label_b: str = "b") -> Comparison:
    """Welch's unequal-variance t-test of mean(a) vs mean(b); std shown is the sample std (ddof 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each side needs at least 2 scores")
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(var_a + var_b))
    difference = float(a.mean() - b.mean())
    if se == 0:
        t, p, df = (0.0, 1.0, float(len(a) + len(b) - 2)) if difference == 0 else (float("inf"), 0.0, float("nan"))
    else:
        result = stats.ttest_ind(a, b, equal_var=False)
        t, p = float(result.statistic), float(result.pvalue)
        df = float((var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1)))
    return Comparison(label_a, label_b, float(a.mean()), sample_std(a), len(a), float(b.mean()),
                      sample_std(b), len(b), difference, se, t, df, p)
