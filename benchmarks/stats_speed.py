"""Speed of dataset areas + skewness/kurtosis against a plain numpy/scipy peer.

Both sides get the same in-memory label volumes (BraTS-sized, 240 x 240 x 155,
uint8, labels 0/1/2/4) and compute the whole-tumour area of every axial slice
and S, K of the non-zero areas:

- ours: ``napari_calf.calf.stats.dataset_areas`` + ``imbalance_stats`` (which also keep
  case ids, slice indices, empty counts and validate their input);
- peer: ``labels > 0``, then ``np.count_nonzero`` per slice in a Python loop,
  then ``scipy.stats.skew`` / ``kurtosis`` (the reference the goal is set against);
- a stronger peer, shown for honesty: one ``np.count_nonzero(mask, axis=(0, 1))``
  per volume instead of the loop.

Run::

    .venv/bin/python benchmarks/stats_speed.py            # 100 volumes
    .venv/bin/python benchmarks/stats_speed.py --volumes 30 --repeats 5

Prints both times (best of ``--repeats``) and the ratio ours / peer; the goal
is <= 1.2. Results are checked to be equal before timing counts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

from napari_calf.calf.areas import dataset_areas
from napari_calf.calf.stats import imbalance_stats

SHAPE = (240, 240, 155)


def make_volumes(n: int, seed: int = 0) -> list[tuple[str, np.ndarray, tuple[float, float, float]]]:
    """``n`` label volumes, each with an ellipsoidal tumour of random size and place."""
    rng = np.random.default_rng(seed)
    x, y, z = (np.arange(s, dtype=np.float32) for s in SHAPE)
    cases = []
    for i in range(n):
        labels = np.zeros(SHAPE, dtype=np.uint8)
        radii = rng.lognormal(np.log(18), 0.5, size=3).clip(3, 60)
        centre = rng.uniform([70, 70, 40], [170, 170, 115])
        lo = np.maximum(np.floor(centre - radii).astype(int), 0)
        hi = np.minimum(np.ceil(centre + radii).astype(int) + 1, SHAPE)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        r2 = (
            ((x[box[0]] - centre[0]) / radii[0])[:, None, None] ** 2
            + ((y[box[1]] - centre[1]) / radii[1])[None, :, None] ** 2
            + ((z[box[2]] - centre[2]) / radii[2])[None, None, :] ** 2
        )
        labels[box] = np.where(r2 <= 1, 2, 0) + np.where(r2 <= 0.4, 2, 0)  # ED shell, ET core
        cases.append((f"case{i:03d}", labels, (1.0, 1.0, 1.0)))
    return cases


def ours(cases: list) -> tuple[float, float, int]:
    areas = dataset_areas(cases)
    st = imbalance_stats(areas)
    return st.skewness, st.kurtosis, st.n_empty


def peer(cases: list) -> tuple[float, float, int]:
    all_areas = []
    for _case_id, labels, _spacing in cases:
        mask = labels > 0
        all_areas.extend(np.count_nonzero(mask[:, :, k]) for k in range(mask.shape[2]))
    a = np.asarray(all_areas, dtype=np.float64)
    nz = a[a > 0]
    return float(sps.skew(nz, bias=True)), float(sps.kurtosis(nz, fisher=True, bias=True)), int(
        (a == 0).sum()
    )


def peer_vectorised(cases: list) -> tuple[float, float, int]:
    """A stronger peer: one ``np.count_nonzero(mask, axis=(0, 1))`` per volume."""
    a = np.concatenate([np.count_nonzero(labels > 0, axis=(0, 1)) for _c, labels, _s in cases])
    a = a.astype(np.float64)
    nz = a[a > 0]
    return float(sps.skew(nz, bias=True)), float(sps.kurtosis(nz, fisher=True, bias=True)), int(
        (a == 0).sum()
    )


def best_time(fn, cases, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(cases)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=100, help="label volumes (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each; best counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    cases = make_volumes(args.volumes)
    a, b = ours(cases), peer(cases)
    if not (np.allclose(a[:2], b[:2], rtol=1e-12) and a[2] == b[2]):
        raise SystemExit(f"results differ: ours {a}, peer {b}")
    t_peer = best_time(peer, cases, args.repeats)
    t_vec = best_time(peer_vectorised, cases, args.repeats)
    t_ours = best_time(ours, cases, args.repeats)
    print(f"{args.volumes} volumes of {SHAPE}, S = {a[0]:.3f}, K = {a[1]:.3f}, empty slices = {a[2]}")
    print(f"peer (count_nonzero per slice + scipy): {t_peer * 1e3:8.1f} ms")
    print(f"peer, vectorised count_nonzero(axis=(0, 1)): {t_vec * 1e3:8.1f} ms")
    print(f"ours (dataset_areas + imbalance_stats): {t_ours * 1e3:8.1f} ms")
    print(f"ratio ours / peer: {t_ours / t_peer:.2f} (goal <= 1.2)")
    print(f"ratio ours / vectorised peer: {t_ours / t_vec:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "volumes": args.volumes, "shape": list(SHAPE), "ours_s": t_ours, "peer_s": t_peer,
            "vectorised_peer_s": t_vec, "ratio": t_ours / t_peer,
            "ratio_vs_vectorised": t_ours / t_vec, "goal": "<= 1.2",
        }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
