"""How an audit of a phantom with known errors fares against its truth (the README's tables).

For an audit folder of ``napari-calf phantom --label-errors`` data, prints:

- precision and recall of the top-k issues per injected kind, for k = the number of
  injected errors, twice that, and all issues (``audit.match_injected``);
- the median signed surface distance to the truth of the labels and of the models'
  consensus (does the models' boundary follow the annotators' style?);
- the share of "spurious" suspects that are true tumour;
- when ``AUDIT/corrections`` exists: label Dice against the truth before and after the
  corrections, and per accepted kind the share of changed voxels that now agree with it.

    python benchmarks/audit_against_truth.py DATA AUDIT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("audit", type=Path)
    args = p.parse_args()
    from napari_calf.audit.predictions import load_prediction
    from napari_calf.audit.review import load_audit_folder, suggest_label
    from napari_calf.audit.scoring import match_injected, signed_surface_distance
    from napari_calf.calf.metrics import dice
    from napari_calf.io.volumes import load_volume

    data, audit = args.data, args.audit
    rows = json.loads((audit / "issues.json").read_text())["issues"]
    inclusive = [{**r, "bbox": [[lo, hi - 1] for lo, hi in r["bbox"]]} for r in rows]
    errors = json.loads((data / "label_errors.json").read_text())["errors"]
    k = sum(e["kind"] != "systematic-dilate" for e in errors)
    for top in sorted({k, 2 * k, len(rows)}):
        m = match_injected(inclusive, errors, k=top)
        found = ", ".join(f"{kind} {v['found']}/{v['n']}" for kind, v in m["per_injected_kind"].items())
        print(f"top-{top}: precision {m['precision']:.2f}, recall {m['recall']:.2f} ({found})")

    def truth(cid: str) -> np.ndarray:
        return load_volume(data / "truth" / cid / f"{cid}_seg.nii.gz", label=True).data

    def noisy(cid: str) -> np.ndarray:
        return load_volume(data / cid / f"{cid}_seg.nii.gz", label=True).data

    labels_mm, models_mm = [], []
    for cid in json.loads((audit / "audit.json").read_text())["cases"]:
        volume = load_volume(data / "truth" / cid / f"{cid}_seg.nii.gz", label=True)
        t = volume.data
        prob, _ = load_prediction(audit, cid, t.shape)
        a = signed_surface_distance(noisy(cid) > 0, t > 0, volume.spacing)
        b = signed_surface_distance(prob > 0.5, t > 0, volume.spacing)
        if a is not None and b is not None:
            labels_mm.append(a)
            models_mm.append(b)
    print(f"signed surface distance to the truth, median over {len(labels_mm)} cases: labels "
          f"{np.median(labels_mm):+.2f} mm, models' consensus {np.median(models_mm):+.2f} mm")

    spurious = [r for r in rows if r["kind"] == "spurious"]
    real = 0
    for r in spurious:
        box = tuple(slice(lo, hi) for lo, hi in r["bbox"])
        drawn = noisy(r["case_id"])[box] > 0
        real += bool(((truth(r["case_id"])[box] > 0) & drawn).any())
    print(f"spurious suspects overlapping true tumour: {real} of {len(spurious)}")

    record = audit / "corrections" / "corrections.json"
    if not record.is_file():
        return
    decisions = json.loads(record.read_text())["decisions"]
    review = load_audit_folder(audit)
    by_id = {item.id: item for item in review.issues}
    before, after, agree = [], [], {}
    for cid in sorted({d["case_id"] for d in decisions}):
        t, label = truth(cid) > 0, noisy(cid)
        fixed = load_volume(audit / "corrections" / cid / f"{cid}_seg.nii.gz", label=True).data
        before.append(dice(label > 0, t))
        after.append(dice(fixed > 0, t))
        prob, _ = load_prediction(audit, cid, label.shape)
        for d in (d for d in decisions if d["case_id"] == cid):
            item = by_id[d["issue_id"]]
            new = suggest_label(item, label, prob, confident=review.confident)
            changed = new != label
            counts = agree.setdefault(item.kind, [0, 0])
            counts[0] += int(((new > 0) == t)[changed].sum())
            counts[1] += int(changed.sum())
            label = new
    print(f"{len(decisions)} accepted issues in {len(before)} cases: label Dice against the truth "
          f"{np.mean(before):.3f} -> {np.mean(after):.3f}")
    for kind, (ok, n) in agree.items():
        print(f"  {kind:<10} changed {n:>6} voxels, {ok / max(n, 1):.0%} now agree with the truth")


if __name__ == "__main__":
    main()
