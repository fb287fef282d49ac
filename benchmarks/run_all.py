"""Every benchmark in one go: one table of ratios against peers, and one JSON file.

Each benchmark script runs in its own subprocess (so memory, CUDA state and thread
pools do not leak from one into the next) with a time limit, writes its figures with
``--json``, and this driver gathers the ratio of each against its goal:

==================  ==========================================================  ========
name                ratio                                                       goal
==================  ==========================================================  ========
train_<arch>        trainer images/s / bare smp loop (Unet, FPN, DeepLabV3)     >= 0.95
inference           predict_volume s / bare forward s, one 4x240x240x155 case   <= 1.5
loss                slowest CALF transform / BCE + smp Dice (median, fwd+bwd)   <= 1.5
stats               dataset_areas + imbalance_stats / numpy+scipy peer          <= 1.2
data_anon           peak anonymous memory preparing the largest N / smallest N  <= 1.15
data_time           seconds per case preparing the largest N / smallest N       <= 1.25
data_epoch_file     file pages mapped during an epoch / store size              <= 0.1 [#]
audit               score_case / bare label+EDT pass over the 20 mm box (median) <= 1.0
==================  ==========================================================  ========

[#] judged on stores of 100 MiB or more (the full run's); smaller ones show "?".

The full run (default) is sized for one GPU: the trainer at batch 32 of 4x256x256
(resnet34), a BraTS-sized inference case, full-size phantom cases for the data
benchmark; about 5 minutes on one H200-class GPU with 16 CPU cores, and it stops
starting benchmarks once ``--budget`` seconds (default 480) are used. ``--quick`` runs
small versions of the same on the CPU, one thread each, in a few minutes (tiny models
and images), so the driver and every benchmark are exercised anywhere; its ratios are
not measurements of anything.

    python benchmarks/run_all.py                        # the GPU session's run
    python benchmarks/run_all.py --quick                # small, CPU
    python benchmarks/run_all.py --quick --only stats loss --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHS = ("unet", "fpn", "deeplabv3")


def _train(arch: str, quick: bool) -> list[str]:
    # FPN has no shallow variant in smp (build_model ignores its depth): 5 for both sides
    if quick:
        depth = "5" if arch == "fpn" else "3"
        return ["train_throughput.py", "--device", "cpu", "--arch", arch, "--encoder", "resnet18",
                "--depth", depth, "--batch-size", "4", "--size", "64", "--steps", "3",
                "--warmup", "1", "--repeats", "1"]
    return ["train_throughput.py", "--arch", arch, "--encoder", "resnet34", "--depth", "5",
            "--batch-size", "32", "--size", "256", "--steps", "100", "--warmup", "20",
            "--repeats", "2"]


def _inference(quick: bool) -> list[str]:
    if quick:
        return ["inference_speed.py", "--device", "cpu", "--small", "--encoder", "resnet18",
                "--batch-size", "8", "--repeats", "1"]
    return ["inference_speed.py", "--batch-size", "32", "--repeats", "3"]


def _loss(quick: bool) -> list[str]:
    if quick:
        return ["loss_speed.py", "--device", "cpu", "--rounds", "2", "--inner", "1",
                "--batch", "2", "--size", "64"]
    return ["loss_speed.py", "--device", "all", "--rounds", "15"]


def _stats(quick: bool) -> list[str]:
    if quick:
        return ["stats_speed.py", "--volumes", "4", "--repeats", "1"]
    return ["stats_speed.py", "--volumes", "100", "--repeats", "3"]


def _data(quick: bool) -> list[str]:
    if quick:
        return ["data_scale.py", "--sizes", "2", "4"]
    return ["data_scale.py", "--full-size", "--sizes", "4", "8", "16",
            "--jobs", str(min(16, os.cpu_count() or 1))]


def _audit(quick: bool) -> list[str]:
    if quick:
        return ["audit_scoring.py", "--cases", "2", "--repeats", "1"]
    return ["audit_scoring.py", "--cases", "12", "--repeats", "3"]


#: name -> (command builder, seconds allowed in the full run, in the quick run)
BENCHMARKS: dict[str, tuple[Callable[[bool], list[str]], int, int]] = {
    **{f"train_{a}": ((lambda q, a=a: _train(a, q)), 150, 60) for a in ARCHS},
    "inference": (_inference, 90, 60),
    "loss": (_loss, 90, 40),
    "stats": (_stats, 90, 30),
    "data": (_data, 180, 90),
    "audit": (_audit, 90, 40),
}
#: names --only accepts for groups of benchmarks
GROUPS = {"train": [f"train_{a}" for a in ARCHS]}


def _rows(name: str, figures: dict) -> list[dict]:
    """Table rows (name, ratio, goal, detail) from one benchmark's JSON."""
    if name == "data":
        s = figures["summary"]
        return [
            {"name": "data_anon", "ratio": s["anon_ratio"], "goal": "<= 1.15",
             "detail": f"peak RssAnon {s['anon_mib'][0]:.0f} -> {s['anon_mib'][-1]:.0f} MiB "
                       f"for N {s['sizes'][0]} -> {s['sizes'][-1]}"},
            {"name": "data_time", "ratio": s["time_ratio"], "goal": "<= 1.25",
             "detail": f"{s['s_per_case'][0]:.2f} -> {s['s_per_case'][-1]:.2f} s per case "
                       f"(CPU {s['cpu_s_per_case'][0]:.2f} -> {s['cpu_s_per_case'][-1]:.2f})"},
            # a few MiB of library pages come and go whatever the store: judged only on
            # stores large enough for them not to matter
            {"name": "data_epoch_file", "ratio": s["epoch_file_share"],
             "goal": "<= 0.1" if s["store_mib"] >= 100 else "n/a (store < 100 MiB)",
             "detail": f"RssFile +{s['epoch_file_mib']:.0f} MiB over an epoch of a "
                       f"{s['store_mib']:.0f} MiB store"},
        ]
    detail = {
        "stats": lambda f: f"ours {f['ours_s'] * 1e3:.0f} ms, peer {f['peer_s'] * 1e3:.0f} ms, "
                           f"{f['volumes']} volumes",
        "inference": lambda f: f"ours {f['ours_s']:.3f} s, bare {f['bare_s']:.3f} s per case "
                               f"({f['device']})",
        "loss": lambda f: ", ".join(f"{d} worst {v['worst_median_ratio']:.2f}"
                                    for d, v in f["devices"].items()),
        "audit": lambda f: f"ours {f['ours_s'] * 1e3:.0f} ms per case, boxed peer "
                           f"{f['boxed_peer_s'] * 1e3:.0f} ms, whole-volume peer "
                           f"{f['peer_s'] * 1e3:.0f} ms, {f['cases']} phantom cases",
    }.get(name, lambda f: (
        f"{f['arch']}-{f['encoder']}, ours {min(f['ours_images_per_s']):.0f}-"
        f"{max(f['ours_images_per_s']):.0f} vs bare {min(f['bare_images_per_s']):.0f}-"
        f"{max(f['bare_images_per_s']):.0f} img/s ({f['device']}); spread "
        f"{min(f['ratios']):.3f}-{max(f['ratios']):.3f}"))
    return [{"name": name, "ratio": figures["ratio"], "goal": figures["goal"],
             "detail": detail(figures)}]


def meets(ratio: float, goal: str) -> bool | None:
    """Whether ``ratio`` meets a goal written as ``"<= 1.5"`` or ``">= 0.95"``."""
    match = re.match(r"\s*(<=|>=)\s*([\d.]+)", goal)
    if not match:
        return None
    limit = float(match[2])
    return ratio <= limit if match[1] == "<=" else ratio >= limit


def run(names: list[str], *, quick: bool, budget: float, workdir: Path,
        echo: Callable[[str], None] = print) -> dict:
    """Run the named benchmarks; return the JSON-able report."""
    t_start = time.monotonic()
    results: dict[str, dict] = {}
    rows: list[dict] = []
    env = dict(os.environ)
    src = HERE.parent / "src"
    if src.is_dir():  # a checkout: measure its sources, not an installed copy
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    if quick:
        # one thread: on a small shared CPU, torch's OpenMP workers stall whenever the
        # scheduler parks one of them, which made tiny runs 10x slower; quick runs test
        # the benchmarks, they do not measure the machine
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
    for name in names:
        build, full_limit, quick_limit = BENCHMARKS[name]
        left = budget - (time.monotonic() - t_start)
        limit = min(quick_limit if quick else full_limit, left)
        if limit < 10:
            results[name] = {"status": "skipped", "reason": f"the {budget:.0f} s budget is used up"}
            echo(f"[{name}] skipped: out of time")
            continue
        out_json = workdir / f"{name}.json"
        argv = build(quick)
        cmd = [sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(out_json)]
        echo(f"[{name}] {' '.join(argv)}")
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env,
                                  cwd=workdir)
        except subprocess.TimeoutExpired:
            results[name] = {"status": "timeout", "seconds": limit}
            echo(f"[{name}] stopped after {limit:.0f} s")
            continue
        seconds = time.monotonic() - t0
        if not out_json.is_file():
            tail = (proc.stdout + proc.stderr)[-2000:]
            results[name] = {"status": "failed", "returncode": proc.returncode,
                             "seconds": seconds, "output": tail}
            echo(f"[{name}] failed (exit {proc.returncode}):\n{tail}")
            continue
        figures = json.loads(out_json.read_text(encoding="utf-8"))
        new_rows = _rows(name, figures)
        for row in new_rows:
            row["ok"] = meets(row["ratio"], row["goal"])
        rows.extend(new_rows)
        results[name] = {"status": "ok", "seconds": seconds, "figures": figures}
        echo(f"[{name}] done in {seconds:.0f} s")
    return {
        "mode": "quick" if quick else "full",
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "gpu": _gpu_name(),
        "seconds": time.monotonic() - t_start,
        "rows": rows,
        "benchmarks": results,
    }


def _gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi (not torch: importing it takes seconds)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    names = out.stdout.strip().splitlines()
    return names[0].strip() if out.returncode == 0 and names else None


def print_table(report: dict) -> None:
    print(f"\n{report['mode']} run, {report['seconds']:.0f} s; GPU: {report['gpu'] or 'none'}; "
          f"{report['cpus']} CPUs")
    print(f"{'benchmark':<17}{'ratio':>8}  {'goal':<8}{'met':<5}detail")
    for row in report["rows"]:
        met = {True: "yes", False: "NO", None: "?"}[row["ok"]]
        print(f"{row['name']:<17}{row['ratio']:>8.3f}  {row['goal']:<8}{met:<5}{row['detail']}")
    for name, res in report["benchmarks"].items():
        if res["status"] != "ok":
            print(f"{name:<17}{'-':>8}  {res['status']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", "--cpu", action="store_true",
                   help="small versions on the CPU (about a minute)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"run only these: {', '.join([*BENCHMARKS, *GROUPS])}")
    p.add_argument("--json", type=Path, default=Path("benchmark_results.json"),
                   help="where to write the report (default benchmark_results.json)")
    p.add_argument("--budget", type=float, default=480.0,
                   help="seconds after which no further benchmark starts (default 480)")
    args = p.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = []
        for name in args.only:
            if name in GROUPS:
                names += GROUPS[name]
            elif name in BENCHMARKS:
                names.append(name)
            else:
                p.error(f"unknown benchmark {name!r}; choose from "
                        f"{', '.join([*BENCHMARKS, *GROUPS])}")
    with tempfile.TemporaryDirectory(prefix="napari-calf-bench-") as tmp:
        report = run(names, quick=args.quick, budget=args.budget, workdir=Path(tmp))
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    print(f"\nreport: {args.json.resolve()}")
    return 0 if all(r["status"] == "ok" for r in report["benchmarks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
