"""Welch's t-test: the numbers a closing note quotes (difference, t, df, p) are the textbook ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.stats import welch


def test_welch_matches_the_formula():
    a = np.array([310.0, 512, 488, 701, 455, 390, 620, 540])
    b = np.array([300.0, 150, 410, 220, 280, 190])
    c = welch(a, b, "controller", "random")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    assert c.difference == pytest.approx(a.mean() - b.mean())
    assert c.standard_error == pytest.approx(math.sqrt(va + vb))
    assert c.t == pytest.approx((a.mean() - b.mean()) / math.sqrt(va + vb))
    assert c.df == pytest.approx((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    assert 0.0005 < c.p < 0.01  # t ~ 4.0 on ~12 df
    line = c.line()
    assert line.startswith("controller 502.0") and "random 258.3" in line and "Welch t 4." in line


def test_welch_edge_cases():
    same = welch(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    assert same.t == 0 and same.p == pytest.approx(1.0)
    constant = welch(np.array([5.0, 5, 5]), np.array([5.0, 5]))
    assert constant.p == 1.0
    apart = welch(np.array([7.0, 7, 7]), np.array([5.0, 5]))
    assert apart.p == 0.0 and math.isinf(apart.t)
    with pytest.raises(ValueError):
        welch(np.array([1.0]), np.array([1.0, 2.0]))


def test_the_summary_and_the_welch_line_show_the_same_std():
    """One std everywhere: stage 06's summary line and its Welch line both use the sample std (ddof 1)."""
    from common.stats import sample_std
    from control.evaluate import Scores

    a = np.array([310.0, 512, 488, 701, 455, 390, 620, 540])
    b = np.array([300.0, 150, 410, 220, 280, 190])
    std = f"{a.std(ddof=1):.1f}"
    assert std != f"{a.std():.1f}"  # the two conventions differ on these scores, so the check can fail
    summary = Scores("controller", list(range(len(a))), a, np.full(len(a), 100.0)).summary()
    assert summary.startswith(f"controller: 502.0 ± {std} over 8 episodes"), summary
    assert f"controller 502.0 ± {std} (n 8)" in welch(a, b, "controller", "random").line()
    assert sample_std(np.array([3.0])) == 0.0 and sample_std([1.0, 3.0]) == pytest.approx(math.sqrt(2))
