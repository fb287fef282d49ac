"""Paired statistics of the study report: bootstrap interval, Wilcoxon test, verdict.

Pairs are differences (reference − other) of one metric over the same validation units
(a case of a seed, or a slice of a case). Units of one case are not independent (its
slices share the patient; across seeds it is the same image), so when pairs carry case
ids the interval is a **cluster bootstrap**: cases are resampled, each with all of its
pairs, and the statistic is the mean over the pairs drawn. The Wilcoxon signed-rank test
then runs on one mean difference per case for the same reason.

The resampling is ``scipy.stats.bootstrap`` (percentile interval) in batches, so memory
stays at about a million numbers whatever the number of pairs; the study once built the
whole resamples × pairs index matrix (973 MB at 30,000 pairs).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "wilcoxon_p", "paired_test", "case_means", "BATCH_ELEMENTS"]

#: Resampled numbers held at once (batch × units); ~8 MB of float64 plus the indices.
BATCH_ELEMENTS = 2**20


def _cluster_sums(d: np.ndarray, clusters: Sequence[Hashable] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sums and counts of ``d``: one unit per cluster (or per pair)."""
    if clusters is None:
        return d, np.ones_like(d)
    labels = np.asarray([str(c) for c in clusters])
    if labels.shape != d.shape:
        raise ValueError(f"{labels.size} cluster labels for {d.size} differences")
    _, inverse = np.unique(labels, return_inverse=True)
    return np.bincount(inverse, weights=d), np.bincount(inverse).astype(float)


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Any, *, paired: bool,
               n_resamples: int, batch: int, seed: int, level: float) -> tuple[float, float]:
    from scipy import stats

    kwargs: dict[str, Any] = dict(n_resamples=n_resamples, batch=batch, paired=paired,
                                  vectorized=True, confidence_level=level, method="percentile")
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate (all-equal) samples
        try:
            res = stats.bootstrap(data, statistic, rng=rng, **kwargs)
        except TypeError:  # scipy < 1.15 names the generator random_state
            res = stats.bootstrap(data, statistic, random_state=rng, **kwargs)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(diffs: Sequence[float], *, clusters: Sequence[Hashable] | None = None,
                 n_resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (seeded).

    Parameters
    ----------
    diffs : sequence of float, shape (n_pairs,)
    clusters : sequence, shape (n_pairs,), optional
        The case of each pair. Given, cases are resampled with all their pairs (cluster
        bootstrap) and the statistic is the mean over the pairs drawn; otherwise pairs
        are resampled one by one.

    Returns
    -------
    (low, high)
        NaN, NaN with fewer than two units to resample (no interval can be honest then).
    """
    d = np.asarray(diffs, dtype=float)
    sums, counts = _cluster_sums(d, clusters)
    n_units = sums.size
    if n_units < 2:
        return math.nan, math.nan
    batch = max(1, BATCH_ELEMENTS // n_units)
    if np.all(counts == 1):
        return _bootstrap((sums,), np.mean, paired=False, n_resamples=n_resamples,
                          batch=batch, seed=seed, level=level)

    def pooled_mean(s: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
        return s.sum(axis=axis) / n.sum(axis=axis)

    return _bootstrap((sums, counts), pooled_mean, paired=True, n_resamples=n_resamples,
                      batch=batch, seed=seed, level=level)


def case_means(diffs: Sequence[float], clusters: Sequence[Hashable]) -> np.ndarray:
    """One mean difference per case (the units the Wilcoxon test may treat as independent)."""
    sums, counts = _cluster_sums(np.asarray(diffs, dtype=float), clusters)
    return sums / counts


def wilcoxon_p(diffs: Sequence[float]) -> tuple[float | None, str | None]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    Returns
    -------
    (p, None), or (None, reason) when the test is not computable: fewer than 3 pairs,
    every difference zero, or scipy refusing the input.
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size < 3:
        return None, f"not computable: only {d.size} pair(s) (the test needs at least 3)"
    if np.all(d == 0):
        return None, "not computable: every paired difference is exactly zero"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.wilcoxon(d)
    except ValueError as exc:
        return None, f"not computable: {exc}"
    p = float(res.pvalue)
    if not math.isfinite(p):
        return None, "not computable: scipy returned no p-value for these differences"
    return p, None


def paired_test(diffs: Sequence[float], *, reference: str, other: str, metric: str,
                clusters: Sequence[Hashable] | None = None, n_resamples: int = 2000,
                seed: int = 0, higher_is_better: bool = True) -> dict[str, Any]:
    """Mean difference (reference − other), bootstrap interval, Wilcoxon p and a verdict.

    With ``clusters`` (the case of each pair) the interval resamples cases and the
    Wilcoxon test runs on per-case mean differences; ``n_cases`` says how many.
    """
    d = np.asarray(diffs, dtype=float)
    keep = np.isfinite(d)
    d = d[keep]
    groups = None if clusters is None else [c for c, k in zip(clusters, keep) if k]
    out: dict[str, Any] = {"reference": reference, "other": other, "metric": metric,
                           "n_pairs": int(d.size), "n_cases": None, "mean_diff": None,
                           "ci_low": None, "ci_high": None, "p_wilcoxon": None, "p_note": None}
    if d.size == 0:
        out["verdict"] = "no pairs to compare (the two losses share no evaluated case)"
        return out
    units = d if groups is None else case_means(d, groups)
    out["n_cases"] = None if groups is None else int(units.size)
    out["mean_diff"] = float(d.mean())
    lo, hi = bootstrap_ci(d, clusters=groups, n_resamples=n_resamples, seed=seed)
    has_ci = math.isfinite(lo) and math.isfinite(hi)
    if has_ci:
        out["ci_low"], out["ci_high"] = lo, hi
    p, note = wilcoxon_p(units)
    if note is not None and groups is not None:
        note = note.replace("pair(s)", "case(s)")
    out["p_wilcoxon"], out["p_note"] = p, note
    p_text = f"p = {p:.3g}" if p is not None else f"Wilcoxon {note}"
    ci_text = (f"95% CI [{lo:+.3f}, {hi:+.3f}]" if has_ci
               else "no interval: fewer than 2 cases to resample")
    text = f"mean difference {d.mean():+.3f}, {ci_text}, {p_text}"
    if not has_ci or (lo <= 0 <= hi) or p is None or p >= 0.05:
        why = ("no interval was possible" if not has_ci else
               "the interval contains 0" if lo <= 0 <= hi else
               "the p-value is not below 0.05" if p is not None else "no test was possible")
        out["distinguishable"] = False
        out["verdict"] = (f"{reference} vs {other} ({metric}): not distinguishable from noise "
                          f"({why}; {text}).")
    else:
        better = (d.mean() > 0) == higher_is_better
        out["distinguishable"] = True
        out["verdict"] = (f"{reference} is {'better' if better else 'worse'} than {other} on "
                          f"{metric} ({text}).")
    return out
