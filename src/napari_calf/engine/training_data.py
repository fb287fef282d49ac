"""From a dataset folder to training and validation slice stores (part of training).

Order of work (CALF_METHOD §1): split by case → measure the training split's slice
areas → filter → statistics → loss selection; the validation split is measured and
prepared apart and never influences the statistics or the selection.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any


import numpy as np

from ..config import RunConfig
from .data import CaseSplit, cap_slices_per_case, slices_by_case, split_cases
from ..errors import CalfInputError
from ..events import Progress
from .slice_store import SliceStore, iter_build_slice_store

#: Dropped empty slices are summarised by count in the run card; listing each would make
#: the card megabytes long on BraTS. Everything else dropped or flagged is listed.
_REPORT_LIMIT = 5000


@dataclass(frozen=True)
class PreparedData:
    """Everything training needs from the data, plus what the run card records."""

    split: CaseSplit
    train: SliceStore
    val: SliceStore
    stats: Any  # stats.ImbalanceStats of the filtered training slices
    selection: Any  # stats.Selection
    filter_summary: dict[str, Any]
    filter_report: list[dict[str, Any]]
    rules: tuple[Any, ...]
    skipped: tuple[str, ...]
    labels_from: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The data part of the run card (JSON-safe)."""
        return {
            "labels_from": self.labels_from,
            "split": self.split.to_dict(),
            "statistics": self.stats.to_dict(),
            "selection": self.selection.to_dict(),
            "filtering": self.filter_summary,
            "filter_report": self.filter_report,
            "skipped_cases": list(self.skipped),
            "train_store": self.train.summary(),
            "val_store": self.val.summary(),
        }


def load_rules_for(config: RunConfig) -> tuple[Any, ...]:
    from ..calf.rules import DEFAULT_RULES
    from ..calf.rules_io import load_rules

    if config.data.rules_path:
        return tuple(load_rules(config.data.rules_path))
    return tuple(DEFAULT_RULES)


def iter_prepare_data(config: RunConfig) -> Generator[Progress, None, PreparedData]:
    """Discover, split, measure, filter, select and prepare the stores.

    Yields
    ------
    Progress
        Stages ``"areas"`` (training labels), ``"areas-val"``, ``"prepare"`` (training
        slices) and ``"prepare-val"``.
    """
    from ..io.discovery import discover_cases
    from ..calf.filtering import filter_slices
    from ..calf.rules import select_transform
    from ..calf.stats import imbalance_stats

    d = config.data
    seed = config.train.seed
    rules = load_rules_for(config)
    found = discover_cases(d.data_dir)
    cases = [c for c in found if c.label is not None]
    skipped_unlabelled = [f"{c.case_id}: no label file, skipped" for c in found if c.label is None]
    if len(cases) < 2:
        raise CalfInputError(
            d.data_dir,
            f"holds {len(cases)} case(s) with a label file; training needs at least 2 "
            "(one for training and one for validation: slices of a case never go to both).",
            "add labelled cases (each with a *_seg.nii.gz), or make a sample set with "
            "`napari-calf phantom OUT --cases 6`.",
        )
    overrides: list[Any] = []
    if d.labels_from:
        from .labels_from import apply_label_overrides

        cases, overrides = apply_label_overrides(cases, d.labels_from)
    corrected = {o.case_id for o in overrides if o.slices}
    split = split_for(cases, d, seed, corrected)

    from ..calf.areas import iter_dataset_areas

    areas = yield from iter_dataset_areas(list(split.train), target=d.target, unit=d.unit)
    filt = filter_slices(
        areas,
        empty_fraction=d.empty_fraction,
        min_area=d.min_area,
        outlier_iqr=d.outlier_iqr,
        drop_outliers=d.drop_outliers,
        seed=seed,
    )
    kept = filt.apply(areas)
    stats = imbalance_stats(kept)
    selection = select_transform(stats, rules)
    train_sel = cap_slices_per_case(
        slices_by_case(areas.case_ids, areas.slices, filt.keep), d.max_slices_per_case, seed
    )
    # corrected slices are what the corrections are for: never left to the empty-slice
    # sampling or the per-case cap
    forced = {o.case_id: np.asarray(o.slices, dtype=np.int64) for o in overrides
              if o.slices and o.case_id in set(split.train_ids)}
    for cid, slices in forced.items():
        train_sel[cid] = np.union1d(train_sel.get(cid, np.zeros(0, np.int64)), slices)

    val_gen = iter_dataset_areas(list(split.val), target=d.target, unit=d.unit)
    val_areas = yield from _restage(val_gen, "areas-val")
    # Validation keeps every tumour slice and a share of the tumour-free ones (to measure
    # false positives); no min_area/outlier filtering: validation judges all sizes.
    val_filt = filter_slices(val_areas, empty_fraction=d.val_empty_fraction, seed=seed)
    val_sel = slices_by_case(val_areas.case_ids, val_areas.slices, val_filt.keep)

    common = {"target": d.target, "clip": d.clip, "pad_multiple": d.pad_multiple,
              "mode": d.store, "cache_dir": d.resolved_cache_dir}
    train_store = yield from _restage(
        iter_build_slice_store(list(split.train), train_sel, name="train", **common), "prepare")
    val_store = yield from _restage(
        iter_build_slice_store(list(split.val), val_sel, name="val", **common), "prepare-val")
    if train_store.modalities != val_store.modalities:
        raise CalfInputError(
            d.data_dir,
            f"training cases have modalities {list(train_store.modalities)} but validation "
            f"cases have {list(val_store.modalities)}.",
            "give every case the same modalities.",
        )
    return PreparedData(
        split=split,
        train=train_store,
        val=val_store,
        stats=stats,
        selection=selection,
        filter_summary=filt.summary(),
        filter_report=filt.report[:_REPORT_LIMIT],
        rules=rules,
        skipped=tuple(skipped_unlabelled) + tuple(areas.skipped) + tuple(val_areas.skipped),
        labels_from=None if not d.labels_from else {
            "dir": str(d.labels_from),
            "cases": [{**o.to_dict(), "in_training_split": o.case_id in forced,
                       "slices_always_trained": len(forced.get(o.case_id, ()))}
                      for o in overrides]},
    )


def split_for(cases: list[Any], d: Any, seed: int, corrected: set[str]) -> CaseSplit:
    """The case split of a run.

    ``d.val_cases`` names the validation cases when set (a cross-validation fold).
    Otherwise cases with corrected labels always train (the corrections are what a
    fine-tuning run is for) and the seeded split is drawn among the others.

    Raises
    ------
    CalfInputError
        An unknown validation case, no case left for training, or every case corrected
        (nothing left to validate on) without ``val_cases``.
    """
    by_id = {c.case_id: c for c in cases}
    if d.val_cases:
        unknown = [cid for cid in d.val_cases if cid not in by_id]
        if unknown:
            raise CalfInputError(d.data_dir, f"has no labelled case {', '.join(unknown[:5])} "
                                 "named as a validation case.",
                                 "name validation cases by the ids `napari-calf analyze` lists.")
        val = set(d.val_cases)
        train = tuple(c for c in sorted(cases, key=lambda c: c.case_id) if c.case_id not in val)
        if not train:
            raise CalfInputError(d.data_dir, "has no case left for training: every case is a "
                                 "validation case.", "name fewer validation cases.")
        return CaseSplit(train=train, val=tuple(by_id[cid] for cid in sorted(val)),
                         seed=int(seed), val_fraction=len(val) / len(cases))
    if not corrected:
        return split_cases(cases, d.val_fraction, seed)
    others = [c for c in cases if c.case_id not in corrected]
    if not others:
        raise CalfInputError(d.labels_from, "corrects every case, so none is left to "
                             "validate on.", "name the validation cases with --val-cases.")
    if len(others) == 1:
        inner = CaseSplit(train=(), val=tuple(others), seed=int(seed), val_fraction=d.val_fraction)
    else:
        inner = split_cases(others, d.val_fraction, seed)
    train = tuple(sorted(list(inner.train) + [by_id[c] for c in corrected], key=lambda c: c.case_id))
    return CaseSplit(train=train, val=inner.val, seed=int(seed), val_fraction=d.val_fraction)


def _restage(gen: Generator[Any, None, Any], stage: str) -> Generator[Any, None, Any]:
    """Re-yield ``Progress`` events under another stage name; return the generator's result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Progress):
            event = Progress(stage, event.current, event.total, event.message)
        yield event
