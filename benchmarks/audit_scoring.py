"""Audit scoring per case (no training, no prediction) against a bare scipy pass.

Cases are phantom label maps (80×98×81 at 2 mm) with known errors injected
(``napari_calf.phantom.label_errors``); the "model" probability is the clean truth,
blurred (Gaussian, sigma 1 voxel) so it has soft boundaries. Measured per case:

- ``score_case``: the whole per-case audit (components, consensus, slice gaps, boundary
  distances, issue summaries);
- peer: what any such audit has to do at least once, done directly with scipy on the
  same arrays: ``ndimage.label`` (26-connected) of the label and of the consensus, and a
  Euclidean distance transform (with the spacing) inside and outside the label; over the
  whole volume, and (a second peer) over the box of label and consensus grown by 20 mm,
  which is all ``score_case`` looks at.

The ratios (score_case / peer) say how much the audit costs next to one such bare pass.

    python benchmarks/audit_scoring.py              # 12 cases, 3 repeats
    python benchmarks/audit_scoring.py --cases 4 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

SPEC = "missed=0.15,erased-slices=0.1,dilate=0.1:2mm,erode=0.1:2mm,spurious=0.1,systematic-dilate=2mm"
SPACING = (2.0, 2.0, 2.0)


def make_cases(n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(case id, noisy label, probability) for ``n`` phantom cases."""
    from napari_calf.phantom.dataset import make_labels
    from napari_calf.phantom.label_errors import inject_label_errors

    truth = {f"case{i:02d}": make_labels(seed, skew="right", case_index=i, n_cases=n)
             for i in range(n)}
    noisy, _ = inject_label_errors(truth, SPACING, SPEC, seed=seed)
    out = []
    for cid, clean in truth.items():
        prob = np.clip(ndi.gaussian_filter((clean > 0).astype(np.float32), 1.0), 0, 1)
        out.append((cid, noisy[cid], prob.astype(np.float32)))
    return out


def crop(label: np.ndarray, prob: np.ndarray, pad: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays cut to the box of label or consensus grown by ``pad`` voxels (20 mm)."""
    box = ndi.find_objects(((label > 0) | (prob > 0.5)).astype(np.uint8))
    if not box or box[0] is None:
        return label[:1, :1, :1], prob[:1, :1, :1]
    sl = tuple(slice(max(s.start - pad, 0), s.stop + pad) for s in box[0])
    return label[sl], prob[sl]


def peer(label: np.ndarray, prob: np.ndarray) -> None:
    conn = np.ones((3, 3, 3), dtype=bool)
    mask = label > 0
    ndi.label(mask, structure=conn)
    ndi.label(prob > 0.5, structure=conn)
    ndi.distance_transform_edt(mask, sampling=SPACING)
    ndi.distance_transform_edt(~mask, sampling=SPACING)


def timed(fn, repeats: int) -> float:
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return min(best)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3, help="best of this many per case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    from napari_calf.audit.scoring import score_case

    cases = make_cases(args.cases, args.seed)
    ours, theirs, cropped, issues = [], [], [], 0
    for cid, label, prob in cases:
        # interleaved, so a burst of load on a shared machine hits all alike
        ours.append(timed(lambda: score_case(cid, label, prob, SPACING), args.repeats))
        theirs.append(timed(lambda: peer(label, prob), args.repeats))
        small = crop(label, prob)
        cropped.append(timed(lambda: peer(*small), args.repeats))
        issues += len(score_case(cid, label, prob, SPACING).issues)
    shape = cases[0][1].shape
    ratio = [a / b for a, b in zip(ours, theirs)]
    ratio_crop = [a / b for a, b in zip(ours, cropped)]
    print(f"{len(cases)} phantom cases {shape} at {SPACING[0]:g} mm, {issues} issues found")
    print(f"score_case per case: median {statistics.median(ours) * 1e3:.0f} ms "
          f"(min {min(ours) * 1e3:.0f}, max {max(ours) * 1e3:.0f})")
    print(f"peer (2× ndimage.label + 2× distance_transform_edt): median "
          f"{statistics.median(theirs) * 1e3:.0f} ms")
    print(f"peer on the 20 mm box around label and consensus: median "
          f"{statistics.median(cropped) * 1e3:.0f} ms")
    print(f"ratio score_case / whole-volume peer: median {statistics.median(ratio):.2f} "
          f"(min {min(ratio):.2f}, max {max(ratio):.2f})")
    print(f"ratio score_case / boxed peer: median {statistics.median(ratio_crop):.2f} "
          f"(min {min(ratio_crop):.2f}, max {max(ratio_crop):.2f})")
    if args.json:
        # the goal (benchmarks/run_all.py): scoring a case costs no more than one bare
        # label + distance pass over the region it looks at
        args.json.write_text(json.dumps({
            "ratio": statistics.median(ratio_crop), "goal": "<= 1.0",
            "ratio_whole_volume": statistics.median(ratio), "cases": len(cases),
            "ours_s": statistics.median(ours), "peer_s": statistics.median(theirs),
            "boxed_peer_s": statistics.median(cropped), "issues": issues}, indent=2) + "\n")


if __name__ == "__main__":
    main()
