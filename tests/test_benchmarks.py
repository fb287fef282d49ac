"""The benchmark driver: one quick benchmark end to end, and how goals are judged."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"


def _load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize(
    ("ratio", "goal", "expected"),
    [(0.96, ">= 0.95", True), (0.94, ">= 0.95", False), (1.5, "<= 1.5", True),
     (1.51, "<= 1.5", False), (0.3, "n/a (store < 100 MiB)", None)],
)
def test_goals_are_judged_in_their_direction(ratio: float, goal: str, expected) -> None:
    assert _load_run_all().meets(ratio, goal) is expected


def test_quick_stats_run_writes_a_report_with_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = dict(os.environ)
    src = str(RUN_ALL.parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(RUN_ALL), "--quick", "--only", "stats", "--json", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert list(report["benchmarks"]) == ["stats"]
    figures = report["benchmarks"]["stats"]["figures"]
    (row,) = report["rows"]
    assert row["name"] == "stats" and row["goal"] == "<= 1.2"
    # the ratio in the table is the benchmark's own two timings divided
    assert row["ratio"] == pytest.approx(figures["ours_s"] / figures["peer_s"])
    assert row["ok"] is (row["ratio"] <= 1.2)
    assert "stats" in proc.stdout and f"{row['ratio']:.3f}" in proc.stdout


def test_unknown_benchmark_name_lists_the_valid_ones(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(RUN_ALL), "--quick", "--only", "stat", "--json",
         str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "unknown benchmark 'stat'" in proc.stderr and "train_unet" in proc.stderr
    assert not (tmp_path / "r.json").exists()
