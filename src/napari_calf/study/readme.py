"""The study's ``README.md``: what was run, with what, on what, and what came out.

Written for pasting into a lab notebook: the exact commands (the study's and each
run's), library versions, device, the summary table and the paired comparisons in
words, with the caveats that keep the numbers honest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["readme_text"]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _lesion_note(summary: dict[str, Any]) -> str:
    """What the lesion-wise columns mean, naming the region and the HD95 convention."""
    runs = summary.get("per_run") or []
    regions = ", ".join(f"`{r}`" for r in dict.fromkeys(str(x.get("lesion_region")) for x in runs))
    conventions = ", ".join(f"`{c}`" for c in dict.fromkeys(str(x.get("hd95_convention"))
                                                            for x in runs))
    return (
        f"Lesion-wise columns follow the BraTS 2023 rules for the runs' target region "
        f"({regions}; a binary prediction has no other region to score): each ground-truth "
        "lesion (a 26-connected component; nearby ones merged, tiny ones ignored) and each "
        "false-positive component counts once, a missed or false lesion scoring Dice 0 and "
        "HD95 374 mm, so a model that finds the big tumour but misses or invents small "
        "lesions pays for each. Lesion F1 is the detection F1 of the lesions summed over a "
        f"run's validation cases. HD95 convention: {conventions} (an empty prediction of a "
        "tumour case scores the image diagonal under `monai`, 374 mm under `brats`). "
        "Definitions: `definitions` in summary.json."
    )


def readme_text(summary: dict[str, Any], records: Sequence[Any], table: str) -> str:
    """Markdown text of ``STUDY/README.md``."""
    info = summary.get("study") or {}
    first = records[0].card if records else {}
    versions = first.get("versions") or {}
    devices = sorted({str((r.card.get("device") or {}).get("name")) for r in records})
    cfg = first.get("config") or {}
    lines = [
        "# Loss comparison study",
        "",
        f"Report written {time.strftime('%Y-%m-%d %H:%M %Z')} by napari-calf "
        f"{versions.get('napari-calf', '?')}. Runs: {len(records)} finished "
        f"({', '.join(dict.fromkeys(r.loss for r in records))} × "
        f"{', '.join(dict.fromkeys(r.arch for r in records))} × seeds "
        f"{', '.join(str(s) for s in sorted({r.seed for r in records}))}).",
        "",
        "## Commands",
        "",
    ]
    if info.get("command"):
        lines += ["The study:", "", "```", str(info["command"]), "```", ""]
    lines += ["Each run (an ordinary `napari-calf train` run folder under `runs/`):", "", "```"]
    planned = info.get("train_commands") or {}
    lines += [str(planned.get(r.name) or r.card.get("command") or f"# {r.name}: not recorded")
              for r in records]
    lines += ["```", "", "Report again (evaluates runs that lack it): "
              f"`napari-calf compare --collect {info.get('study_dir', 'STUDY')}`", ""]
    lines += [
        "## Setup",
        "",
        f"- Data: `{(cfg.get('data') or {}).get('data_dir')}`, target "
        f"`{(cfg.get('data') or {}).get('target')}`; split by case, seeded; every run of a seed "
        "has the same split, filtering and CALF statistics, only the loss differs.",
        f"- Model: {(first.get('model') or {}).get('arch')}-{(cfg.get('model') or {}).get('encoder')}"
        f" (depth {(cfg.get('model') or {}).get('encoder_depth')}), "
        f"{(cfg.get('train') or {}).get('epochs')} epochs, batch "
        f"{(cfg.get('train') or {}).get('batch_size')}, lr {(cfg.get('train') or {}).get('lr')}.",
        f"- Device(s): {', '.join(devices)}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "platform")
        + (f"; {versions['platform']}" if "platform" in versions else "") + ".",
        "",
        "CALF's selection on each seed's training split:",
        "",
    ]
    for seed, sel in (summary.get("selections") or {}).items():
        lines.append(f"- seed {seed}: **{sel.get('transform')}**: {sel.get('reason')}")
    thr = summary.get("bucket_thresholds") or {}
    given = summary.get("bucket_thresholds_given")
    lines += ["", "Size buckets (ground-truth tumour area per slice, px): "
              + (f"given, small ≤ {given[0]:g} < medium ≤ {given[1]:g} < large." if given else
                 "tertiles of each seed's training split: "
                 + "; ".join(f"seed {s}: {t[0]:.1f} / {t[1]:.1f}" for s, t in thr.items() if t)
                 + "."), ""]
    lines += [
        "## Results (validation cases; mean ± sd over seeds)",
        "",
        table,
        "",
        "Dice, IoU and HD95 are 3D per-case metrics averaged over the validation cases; the "
        "FP rate is the share of tumour-free validation slices on which the model predicted "
        "any tumour (lower is better); size-bucket columns are mean per-slice Dice. A seed "
        "whose validation cases have no slice in a bucket is left out of that bucket's mean "
        "(no ± when only one seed remains; — when none).",
        "",
        _lesion_note(summary),
        "",
        "## Paired comparison",
        "",
        "| architecture | comparison | metric | pairs (cases) | mean diff | 95% CI | Wilcoxon p |",
        "|---|---|---|---|---|---|---|",
    ]
    boot = summary.get("bootstrap") or {}
    for p in summary.get("paired") or []:
        ci = ("—" if p["ci_low"] is None else f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]")
        pv = _fmt(p["p_wilcoxon"], 3) if p["p_wilcoxon"] is not None else (p["p_note"] or "—")
        md = "—" if p["mean_diff"] is None else f"{p['mean_diff']:+.3f}"
        n = str(p["n_pairs"]) + ("" if p.get("n_cases") is None else f" ({p['n_cases']})")
        lines.append(f"| {p['arch']} | {p['reference']} − {p['other']} | {p['metric']} | "
                     f"{n} | {md} | {ci} | {pv} |")
    lines += ["", "In words:", ""]
    lines += [f"- {p['arch']}: {p['verdict']}" for p in summary.get("paired") or []]
    lines += [
        "",
        "How the numbers were computed: each difference is reference − other over the "
        "same pairs, (seed, validation case) for the case metrics and (seed, case, slice) "
        "for the Dice of small ROIs. The 95% interval is a percentile bootstrap "
        f"(scipy.stats.bootstrap, {boot.get('n_resamples', '?')} resamples, seed "
        f"{boot.get('seed', '?')}) resampling validation cases with all their pairs (a "
        "cluster bootstrap: slices of a case, and a case seen under several seeds, are "
        "correlated, so cases are the independent units); the Wilcoxon signed-rank test runs "
        "on one mean difference per case for the same reason. A handful of cases and seeds "
        "can only show large differences.",
        "",
    ]
    if summary.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"![{name}](plots/{name}.png)" for name in summary["plots"]]
        lines.append("")
    if summary.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    return "\n".join(lines)
