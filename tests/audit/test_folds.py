"""The audit's K-fold plan: every case out of sample exactly once, balanced, reproducible."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from napari_calf.audit.folds import fold_of, make_folds, plan_fold_runs
from napari_calf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from napari_calf.errors import CalfConfigError, CalfInputError

IDS = [f"case{i:02d}" for i in range(11)]


@pytest.mark.parametrize("k", [2, 3, 4, 11])
def test_every_case_is_held_out_exactly_once_in_balanced_folds(k: int) -> None:
    folds = make_folds(IDS, k, seed=3)
    assert len(folds) == k
    held_out = Counter(cid for fold in folds for cid in fold)
    assert set(held_out) == set(IDS) and set(held_out.values()) == {1}
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(IDS)
    assert all(list(f) == sorted(f) for f in folds)
    assert fold_of(folds) == {cid: k_ for k_, f in enumerate(folds) for cid in f}


def test_folds_depend_on_the_seed_and_the_ids_not_their_order() -> None:
    assert make_folds(IDS, 3, seed=1) == make_folds(list(reversed(IDS)), 3, seed=1)
    assert make_folds(IDS, 3, seed=1) != make_folds(IDS, 3, seed=2)


def test_bad_fold_counts_and_repeated_ids_are_refused() -> None:
    for k in (1, 12, 0):
        with pytest.raises(CalfConfigError, match="--folds"):
            make_folds(IDS, k)
    with pytest.raises(CalfInputError, match="case id"):
        make_folds(["a", "a", "b"], 2)


def test_fold_runs_differ_from_the_base_only_in_validation_cases_and_folder(tmp_path: Path) -> None:
    base = RunConfig(data=DataConfig(data_dir=str(tmp_path / "data"), max_slices_per_case=7),
                     model=ModelConfig(arch="unet", encoder="resnet18"),
                     train=TrainConfig(loss="bce", epochs=3, seed=5), out_dir="unused")
    folds = make_folds(IDS, 3, seed=5)
    plan = plan_fold_runs(tmp_path / "audit", base, folds)
    assert [r.name for r in plan.runs] == ["fold0", "fold1", "fold2"]
    for k, run in enumerate(plan.runs):
        assert run.run_dir == (tmp_path / "audit" / "runs" / f"fold{k}").resolve()
        assert run.config.data.val_cases == folds[k]
        assert run.config.out_dir == str(run.run_dir)
        same = run.config.replace(data=base.data.__class__(**{
            **run.config.data.__dict__, "val_cases": None,
            "data_dir": base.data.data_dir}), out_dir="unused")
        assert same == base
        # the config survives the run card's JSON round trip (val_cases as a list)
        assert RunConfig.from_dict(run.config.to_dict()) == run.config
        assert run.config.to_dict()["data"]["val_cases"] == list(folds[k])


def test_audit_plan_file_holds_one_train_command_per_fold(tmp_path: Path, capsys) -> None:
    import json
    import shlex

    from _audit_data import TRAIN_OPTS, write_tiny_dataset

    from napari_calf._cli.main import build_parser, main
    from napari_calf._cli.train import build_config

    data = write_tiny_dataset(tmp_path / "data", 5)
    plan_file = tmp_path / "plan.json"
    assert main(["audit", str(data), "--out", str(tmp_path / "audit"), "--folds", "2",
                 "--plan", str(plan_file), *TRAIN_OPTS]) == 0
    assert "napari-calf audit" in capsys.readouterr().out
    doc = json.loads(plan_file.read_text())
    assert len(doc["commands"]) == 2 and doc["folds"] == [list(f) for f in make_folds(
        [f"Tiny_{i:03d}" for i in range(5)], 2, seed=0)]
    assert doc["collect"].startswith("napari-calf audit ") and "--folds 2" in doc["collect"]
    for k, command in enumerate(doc["commands"]):
        argv = shlex.split(command)
        assert argv[:2] == ["napari-calf", "train"]
        config = build_config(build_parser().parse_args(argv[1:]))
        assert config.data.val_cases == tuple(doc["folds"][k])
        assert config.out_dir == str((tmp_path / "audit" / "runs" / f"fold{k}").resolve())
        assert config.model.encoder == "tu-resnet10t" and config.train.epochs == 1
    assert not (tmp_path / "audit" / "runs").exists()  # nothing trained
