"""The loss comparison study's report: summary table, paired statistics, plots, README.

Input: the :class:`~napari_calf.study.collect.RunRecord` list from :func:`study.iter_collect`
(finished runs, each evaluated on its own validation cases). Output in the study folder:

- ``summary.csv`` / ``summary.json``: per loss × architecture, validation Dice, IoU,
  HD95 and the false-positive rate on tumour-free slices, mean ± sd over seeds, overall
  and per ROI-size bucket; BraTS-2023 lesion-wise Dice and HD95 and the lesion detection
  F1 of the runs' target region; the CALF selection of each seed's training split.
- paired comparison of the reference loss (CALF) against each other loss over the same
  validation cases and seeds: mean difference, seeded bootstrap 95 % interval, Wilcoxon
  signed-rank p-value, and a sentence saying whether it stands out from noise.
- ``plots/dice_by_size.png``, ``plots/dice_vs_size.png`` (:mod:`.study_plots`).
- ``README.md``: commands, versions, device and the tables, for a lab notebook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.checkpoints import write_csv_atomic, write_json_atomic
from ..io.files import write_text_atomic
from ..calf.metrics import SIZE_BUCKETS
from .paired_stats import bootstrap_ci, paired_test, wilcoxon_p
from .report_files import claim_outputs, record_outputs

__all__ = ["run_metrics", "summarise", "paired_test", "paired_comparisons", "bootstrap_ci",
           "wilcoxon_p", "write_report", "SUMMARY_METRICS"]

#: Columns of the summary, each reported as ``<name>_mean`` and ``<name>_sd`` over seeds.
SUMMARY_METRICS = ("dice", "iou", "hd95_mm", "fp_rate_empty",
                   *(f"dice_{b}" for b in SIZE_BUCKETS),
                   "lesion_dice", "lesion_hd95_mm", "lesion_f1")


def _mean(values: Sequence[float | None]) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def run_metrics(record: Any, thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """One run's validation numbers: case means of Dice/IoU/HD95, the pooled FP rate on
    tumour-free slices, mean per-slice Dice per ROI-size bucket, case means of the
    lesion-wise Dice/HD95 and the lesion detection F1 of the summed TP/FP/FN."""
    from .evaluation import pooled_lesion_counts

    ev = record.evaluation
    cases = ev.cases
    n_empty = sum(int(c.get("empty_slices") or 0) for c in cases)
    n_fp = sum(int(c.get("fp_empty_slices") or 0) for c in cases)
    buckets = ev.bucket_summary(thresholds)
    out: dict[str, Any] = {
        "run": record.name, "arch": record.arch, "loss": record.loss, "seed": record.seed,
        "n_val_cases": len(cases),
        "dice": _mean([c["dice"] for c in cases]),
        "iou": _mean([c["iou"] for c in cases]),
        "hd95_mm": _mean([c["hd95_mm"] for c in cases]),
        "fp_rate_empty": n_fp / n_empty if n_empty else None,
        "bucket_thresholds": buckets["thresholds"],
    }
    # pooled like the FP rate: a case with nothing to find and nothing found would
    # otherwise count as a perfect F1 of 1
    counts = pooled_lesion_counts(cases)
    out.update({
        "lesion_dice": _mean([c.get("lesion_dice") for c in cases]),
        "lesion_hd95_mm": _mean([c.get("lesion_hd95_mm") for c in cases]),
        "lesion_f1": counts["f1"],
        "lesion_tp": counts["tp"], "lesion_fp": counts["fp"], "lesion_fn": counts["fn"],
        "lesion_region": ev.target, "hd95_convention": ev.hd95_convention,
    })
    for b in SIZE_BUCKETS:
        out[f"dice_{b}"] = buckets[b]["mean"]
        out[f"n_{b}"] = buckets[b]["n"]
    return out


def _selection_text(record: Any) -> str:
    sel, st = record.selection, record.statistics
    s, k = st.get("skewness"), st.get("kurtosis")
    if s is None or k is None:
        return f"{sel.get('transform')} (S, K undefined)"
    return f"{sel.get('transform')} (S={s:.2f}, K={k:.2f})"


def summarise(records: Sequence[Any], thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Per loss × architecture: mean and sd over seeds of :func:`run_metrics`.

    The sd is the sample sd (ddof 1); ``None`` with a single seed. Losses keep the order
    in which they first appear in ``records``.
    """
    per_run = [run_metrics(r, thresholds) for r in records]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in per_run:
        groups.setdefault((row["arch"], row["loss"]), []).append(row)
    rows = []
    for (arch, loss), runs in groups.items():
        row: dict[str, Any] = {"arch": arch, "loss": loss, "n_seeds": len(runs),
                               "seeds": " ".join(str(r["seed"]) for r in runs),
                               "n_val_cases": runs[0]["n_val_cases"]}
        for m in SUMMARY_METRICS:
            v = np.array([r[m] for r in runs if r[m] is not None], dtype=float)
            row[f"{m}_mean"] = float(v.mean()) if v.size else None
            row[f"{m}_sd"] = float(v.std(ddof=1)) if v.size >= 2 else None
        rows.append(row)
    selections: dict[str, dict[str, Any]] = {}
    for r in records:
        key = str(r.seed)
        if key not in selections and r.selection:
            st = r.statistics
            selections[key] = {"transform": r.selection.get("transform"),
                               "skewness": st.get("skewness"), "kurtosis": st.get("kurtosis"),
                               "n": st.get("n"), "reason": r.selection.get("reason"),
                               "text": _selection_text(r)}
    for row in rows:
        row["calf_selection"] = "; ".join(f"seed {s}: {v['text']}" for s, v in selections.items())
    thresholds_by_seed = {str(r["seed"]): r["bucket_thresholds"] for r in per_run}
    return {"rows": rows, "per_run": per_run, "selections": selections,
            "bucket_thresholds": thresholds_by_seed}


# --------------------------------------------------------------------------- statistics
# bootstrap_ci, wilcoxon_p and paired_test live in .paired_stats (re-exported here).


def _case_values(record: Any, key: str) -> dict[tuple[int, str], float]:
    return {(record.seed, c["case_id"]): float(c[key]) for c in record.evaluation.cases
            if c.get(key) is not None}


def _small_slice_values(record: Any, thresholds: Sequence[float] | None) -> dict[tuple, float]:
    from ..calf.metrics import size_buckets

    ev = record.evaluation
    edges = thresholds if thresholds is not None else ev.size_edges
    s = ev.slices
    if edges is None or not np.any(s["gt_area"] > 0):
        return {}
    small = size_buckets(s["gt_area"], edges) == "small"
    return {(record.seed, cid, int(k)): float(v) for cid, k, v, m in
            zip(s["case_id"], s["slice"], s["dice"], small) if m}


def paired_comparisons(records: Sequence[Any], *, reference: str = "calf",
                       thresholds: Sequence[float] | None = None, n_resamples: int = 2000,
                       seed: int = 0) -> list[dict[str, Any]]:
    """Reference loss against every other loss, per architecture, over shared pairs.

    Pairs are (seed, validation case) for case Dice, HD95 and lesion-wise Dice, and
    (seed, case, slice) for the Dice of small ROIs. Pairs of one case (its slices, and the
    same case under several seeds) are not independent, so every comparison resamples cases
    with all their pairs (:func:`paired_stats.bootstrap_ci` with the case ids as clusters).
    When ``reference`` is not among the losses, the first loss is the reference.
    """
    losses = list(dict.fromkeys(r.loss for r in records))
    if not losses:
        return []
    if reference not in losses:
        reference = losses[0]
    out = []
    for arch in dict.fromkeys(r.arch for r in records):
        by_loss: dict[str, list[Any]] = {}
        for r in records:
            if r.arch == arch:
                by_loss.setdefault(r.loss, []).append(r)
        if reference not in by_loss:
            continue
        for other in (loss for loss in losses if loss != reference and loss in by_loss):
            for metric, getter, better in (
                ("case Dice", lambda r: _case_values(r, "dice"), True),
                ("case HD95 (mm)", lambda r: _case_values(r, "hd95_mm"), False),
                ("slice Dice, small ROIs", lambda r: _small_slice_values(r, thresholds), True),
                ("case lesion-wise Dice", lambda r: _case_values(r, "lesion_dice"), True),
            ):
                a = {k: v for r in by_loss[reference] for k, v in getter(r).items()}
                b = {k: v for r in by_loss[other] for k, v in getter(r).items()}
                keys = sorted(set(a) & set(b))
                diffs = [a[k] - b[k] for k in keys]
                res = paired_test(diffs, reference=reference, other=other, metric=metric,
                                  clusters=[k[1] for k in keys], n_resamples=n_resamples,
                                  seed=seed, higher_is_better=better)
                res["arch"] = arch
                res["seeds"] = sorted({k[0] for k in keys})
                out.append(res)
    return out


# --------------------------------------------------------------------------- files


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pm(row: dict[str, Any], m: str, digits: int = 3) -> str:
    mean, sd = row.get(f"{m}_mean"), row.get(f"{m}_sd")
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table (mean ± sd over seeds)."""
    head = ("| architecture | loss | seeds | Dice | IoU | HD95 (mm) | FP rate, tumour-free slices "
            "| Dice small | Dice medium | Dice large | lesion-wise Dice | lesion-wise HD95 (mm) "
            "| lesion F1 |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['loss']} | {r['n_seeds']} | {_pm(r, 'dice')} | "
                     f"{_pm(r, 'iou')} | {_pm(r, 'hd95_mm', 1)} | {_pm(r, 'fp_rate_empty')} | "
                     f"{_pm(r, 'dice_small')} | {_pm(r, 'dice_medium')} | {_pm(r, 'dice_large')} | "
                     f"{_pm(r, 'lesion_dice')} | {_pm(r, 'lesion_hd95_mm', 1)} | "
                     f"{_pm(r, 'lesion_f1')} |")
    return "\n".join(lines)


def write_report(study_dir: str | Path, records: Sequence[Any], *, notes: Sequence[str] = (),
                 thresholds: Sequence[float] | None = None, info: dict[str, Any] | None = None,
                 reference: str = "calf", n_resamples: int = 2000, seed: int = 0,
                 plots: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Write summary.csv/.json, the plots and README.md into ``study_dir``; return the summary.

    Only the study's own outputs are replaced (:mod:`.report_files`); with ``overwrite``
    any file of those names is.

    Raises
    ------
    CalfInputError
        No finished run to report on, or an output exists that the study did not write
        (or that was edited since), checked before anything is written.
    """
    from ..errors import CalfInputError
    from .readme import readme_text

    study_dir = Path(study_dir)
    if not records:
        raise CalfInputError(study_dir, "has no finished run to report on"
                             + (f" ({'; '.join(notes[:3])})" if notes else "") + ".",
                             "let the runs finish (rerun `napari-calf compare` to resume them) "
                             "or run the plan's commands, then --collect again.")
    outputs = ["summary.csv", "paired.csv", "summary.json", "README.md"]
    if plots:
        outputs += ["plots/dice_by_size.png", "plots/dice_vs_size.png"]
    claim_outputs(study_dir, outputs, overwrite=overwrite)
    summary = summarise(records, thresholds)
    summary["paired"] = paired_comparisons(records, reference=reference, thresholds=thresholds,
                                           n_resamples=n_resamples, seed=seed)
    summary["notes"] = list(notes)
    summary["study"] = info or {}
    summary["bucket_thresholds_given"] = None if thresholds is None else list(thresholds)
    summary["definitions"] = {
        "dice, iou, hd95_mm": "mean over the run's validation cases of the 3D case metric, "
                              "then mean ± sd over seeds",
        "fp_rate_empty": "share of tumour-free validation slices with any predicted tumour",
        "dice_<bucket>": "mean per-slice Dice of validation slices whose ground-truth area is "
                         "in the bucket (tertiles of the seed's training split unless "
                         "--bucket-thresholds), then mean ± sd over seeds",
        "paired": "reference − other over the same (seed, case) or (seed, case, slice) "
                  "pairs; percentile bootstrap 95% interval (scipy.stats.bootstrap, "
                  f"{n_resamples} resamples, seed {seed}) resampling validation cases with "
                  "all their pairs; Wilcoxon signed-rank (scipy) on per-case mean differences",
        **_lesion_definitions(records),
    }
    summary["bootstrap"] = {"n_resamples": n_resamples, "seed": seed, "method": "percentile",
                            "resampled_unit": "validation case (all its pairs)"}
    files = {"summary_csv": study_dir / "summary.csv", "summary_json": study_dir / "summary.json",
             "paired_csv": study_dir / "paired.csv", "readme": study_dir / "README.md"}
    write_csv_atomic(files["summary_csv"], summary["rows"])
    write_csv_atomic(files["paired_csv"], [{k: v for k, v in p.items() if k != "seeds"}
                                           for p in summary["paired"]])
    plot_files: dict[str, str] = {}
    if plots:
        from .plots import plot_dice_by_size, plot_dice_vs_size

        (study_dir / "plots").mkdir(exist_ok=True)
        plot_files["dice_by_size"] = str(plot_dice_by_size(
            summary, study_dir / "plots" / "dice_by_size.png"))
        plot_files["dice_vs_size"] = str(plot_dice_vs_size(
            records, study_dir / "plots" / "dice_vs_size.png"))
    summary["plots"] = plot_files
    summary["files"] = {k: str(v) for k, v in files.items()}
    write_json_atomic(files["summary_json"], _clean(summary))
    write_text_atomic(files["readme"], readme_text(summary, records, markdown_table(summary["rows"])))
    record_outputs(study_dir, outputs)
    return summary


def _lesion_definitions(records: Sequence[Any]) -> dict[str, str]:
    evs = [r.evaluation for r in records]
    regions = ", ".join(dict.fromkeys(str(e.target) for e in evs))
    conventions = ", ".join(dict.fromkeys(str(e.hd95_convention) for e in evs))
    settings = evs[0].lesion_settings
    return {
        "hd95 convention": f"{conventions} (whole-case and lesion-wise HD95; an empty "
                           "prediction of a tumour case scores the image diagonal under monai, "
                           "374 mm under brats)",
        "lesion_dice, lesion_hd95_mm": (
            f"BraTS 2023 lesion-wise scores of the runs' target region ({regions}; a binary "
            "prediction has no other region): per case the mean over ground-truth lesions "
            f"(> {settings.get('min_volume_mm3', 50):g} mm³, merged within "
            f"{settings.get('dilation_voxels', 3)} voxels of dilation) and false-positive "
            "components, a missed or false lesion scoring Dice 0 and HD95 374 mm; mean over "
            "the validation cases, then mean ± sd over seeds"),
        "lesion_f1": "lesion detection F1 = 2TP / (2TP + FP + FN) of the TP/FP/FN lesions "
                     "summed over the run's validation cases, then mean ± sd over seeds",
    }


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj
