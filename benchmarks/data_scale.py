"""Slice-store preparation at scale: time per case and peak memory for N phantom cases.

Writes a phantom dataset once (the largest N; ``--full-size`` for BraTS geometry,
240 x 240 x 155 at 1 mm), then for each N prepares the training slice store of the
first N cases in a fresh subprocess (so each N reports its own peaks): areas →
filtering → store (on disk, like a BraTS-sized set would be), then one epoch of
training batches read from that store (``--no-epoch`` skips it).

Memory is reported in two parts, sampled every 5 ms from ``/proc/self/status``:
``RssAnon`` (the process's own memory: arrays, Python objects) and ``RssFile`` (pages of
files mapped into the process, e.g. a memmap that was touched; the kernel can drop
them, but they count in the RSS that ``top`` shows). The goal: both flat in N, anon
below 1 GB, time per case flat.

    python benchmarks/data_scale.py --full-size --sizes 10 20 40
    python benchmarks/data_scale.py --sizes 5 10 20           # 2 mm phantom, quicker
    python benchmarks/data_scale.py --data /path/to/phantom --sizes 10 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FIELDS = ("RssAnon", "RssFile", "RssShmem", "VmHWM")


def read_status() -> dict[str, int]:
    """KiB of each of ``FIELDS`` now (Linux); empty elsewhere."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in FIELDS:
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


class PeakSampler:
    """Largest value of each RSS part seen by a background thread (every ``period`` s)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.period)

    def sample(self) -> None:
        for key, value in read_status().items():
            self.peak[key] = max(self.peak.get(key, 0), value)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def mib(self) -> dict[str, float]:
        return {k: round(v / 1024, 1) for k, v in self.peak.items()}


def _growth(peak: dict[str, int], start: dict[str, int]) -> dict[str, float]:
    """MiB by which each part rose above ``start`` at its peak."""
    return {k: round((peak[k] - start.get(k, 0)) / 1024, 1) for k in peak if k != "VmHWM"}


def child(data: str, n: int, cache: str, epoch: bool) -> dict:
    from napari_calf.calf.areas import iter_dataset_areas
    from napari_calf.calf.filtering import filter_slices
    from napari_calf.engine.data import slices_by_case
    from napari_calf.engine.slice_store import iter_build_slice_store
    from napari_calf.events import drain
    from napari_calf.io.discovery import discover_cases

    base = read_status()  # after the imports: what any run of the program has
    with PeakSampler() as prep:
        t0, c0 = time.perf_counter(), time.process_time()
        cases = discover_cases(data)[:n]
        areas = drain(iter_dataset_areas(cases))
        t_areas = time.perf_counter() - t0
        keep = filter_slices(areas, empty_fraction=0.1).keep
        sel = slices_by_case(areas.case_ids, areas.slices, keep)
        t1 = time.perf_counter()
        store = drain(iter_build_slice_store(cases, sel, mode="disk", cache_dir=cache))
        t_store = time.perf_counter() - t1
        cpu = time.process_time() - c0
    result = {"n": n, "slices": len(store), "store_mib": round(store.nbytes / 2**20, 1),
              "areas_s_per_case": t_areas / n, "store_s_per_case": t_store / n,
              "s_per_case": (t_areas + t_store) / n,
              # CPU seconds: on a shared machine the steadier sign of work per case
              "cpu_s_per_case": cpu / n,
              "baseline_mib": {k: round(v / 1024, 1) for k, v in base.items()},
              "prepare_peak_mib": prep.mib(),
              "prepare_growth_mib": _growth(prep.peak, base)}
    if epoch:
        import torch

        from napari_calf.engine.batches import BatchFeeder, epoch_batches

        feeder = BatchFeeder(store, torch.device("cpu"))
        batches = epoch_batches(len(store), 32, 0, 1)
        # one batch first, so that torch's libraries and buffers are in place (~400 MB
        # of mapped files, mostly torch): what grows after that is the store's share
        next(iter(feeder.iter_batches(batches[:1])))
        before = read_status()
        with PeakSampler() as ep:
            t0 = time.perf_counter()
            checksum = 0.0
            for x, _y in feeder.iter_batches(batches):
                checksum += float(x[:, 0, 0, 0].sum())  # use the batch, as training would
            t_epoch = time.perf_counter() - t0
        result.update({"epoch_s": t_epoch, "epoch_mib_per_s": store.nbytes / 2**20 / t_epoch,
                       "epoch_start_mib": {k: round(v / 1024, 1) for k, v in before.items()},
                       "epoch_peak_mib": ep.mib(),
                       "epoch_growth_mib": _growth(ep.peak, before)})
    return result


def _write_case(task: tuple[str, int, int, int, bool]) -> None:
    """One phantom case, as ``write_dataset`` writes it (for writing cases in parallel)."""
    import numpy as np

    from napari_calf.io.volumes import save_volume
    from napari_calf.phantom.dataset import MODALITIES, make_case

    data, index, n, seed, full_size = task
    case = make_case(seed, case_index=index, n_cases=n, full_size=full_size)
    folder = Path(data) / case.case_id
    for name in MODALITIES:
        save_volume(case.images[name], folder / f"{case.case_id}_{name}.nii.gz", case.affine,
                    dtype=np.int16)
    save_volume(case.label, folder / f"{case.case_id}_seg.nii.gz", case.affine, dtype=np.uint8)


def write_phantom(data: Path, n: int, *, seed: int = 0, full_size: bool = False,
                  jobs: int = 1) -> None:
    """The phantom dataset of ``n`` cases (in ``jobs`` processes when more than one)."""
    t0 = time.perf_counter()
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_write_case, [(str(data), i, n, seed, full_size) for i in range(n)]))
    else:
        from napari_calf.events import drain
        from napari_calf.phantom.dataset import write_dataset

        extra = {"full_size": True} if full_size else {}
        drain(write_dataset(data, n, seed=seed, **extra))
    print(f"wrote {n} phantom cases{' (full size)' if full_size else ''} "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)


def summary(rows: list[dict]) -> dict:
    """Ratios of the largest N to the smallest: flat is 1."""
    first, last = rows[0], rows[-1]
    anon = [r["prepare_peak_mib"].get("RssAnon", float("nan")) for r in rows]
    out = {"sizes": [r["n"] for r in rows], "anon_mib": anon,
           "file_mib": [r["prepare_peak_mib"].get("RssFile", float("nan")) for r in rows],
           "s_per_case": [r["s_per_case"] for r in rows],
           "cpu_s_per_case": [r["cpu_s_per_case"] for r in rows],
           "cpu_time_ratio": last["cpu_s_per_case"] / first["cpu_s_per_case"],
           "anon_ratio": anon[-1] / anon[0],
           "time_ratio": last["s_per_case"] / first["s_per_case"],
           "store_mib": last["store_mib"]}
    if "epoch_growth_mib" in last:
        out["epoch_file_mib"] = last["epoch_growth_mib"].get("RssFile", float("nan"))
        out["epoch_file_share"] = out["epoch_file_mib"] / last["store_mib"]
    return out


def run(sizes: list[int], *, data: Path | None = None, full_size: bool = False,
        epoch: bool = True, workdir: Path | None = None, seed: int = 0,
        jobs: int = 1) -> list[dict]:
    """Measure every N in ``sizes``; writes the phantom into ``workdir`` unless ``data``."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if data is None or not (data.exists() and any(data.iterdir())):
            data = data or Path(tmp) / "phantom"
            write_phantom(data, max(sizes), seed=seed, full_size=full_size, jobs=jobs)
        rows = []
        for n in sizes:
            cmd = [sys.executable, __file__, "--child", str(data), str(n),
                   str(Path(tmp) / f"cache{n}")] + ([] if epoch else ["--no-epoch"])
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"N={n} failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        return rows


def print_table(rows: list[dict]) -> None:
    """Peaks while preparing (MiB), and how much each part grew over the epoch."""
    nan = float("nan")
    print(f"{'':>43}| prepare, peak MiB    | epoch, growth MiB")
    print(f"{'N':>5} {'slices':>7} {'store MiB':>10} {'s/case':>7} {'cpu s':>6} | {'anon':>6} "
          f"{'file':>6} {'RSS':>6} | {'anon':>6} {'file':>6} {'s':>6}")
    for r in rows:
        p = r["prepare_peak_mib"]
        e = r.get("epoch_growth_mib", {})
        print(f"{r['n']:>5} {r['slices']:>7} {r['store_mib']:>10.1f} {r['s_per_case']:>7.2f} "
              f"{r['cpu_s_per_case']:>6.2f} | "
              f"{p.get('RssAnon', nan):>6.0f} {p.get('RssFile', nan):>6.0f} "
              f"{p.get('VmHWM', nan):>6.0f} | {e.get('RssAnon', nan):>6.0f} "
              f"{e.get('RssFile', nan):>6.0f} {r.get('epoch_s', nan):>6.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100])
    p.add_argument("--data", type=Path, default=None, help="existing phantom folder to reuse")
    p.add_argument("--full-size", action="store_true", help="BraTS geometry (240x240x155, 1 mm)")
    p.add_argument("--no-epoch", action="store_true", help="skip the epoch read from the store")
    p.add_argument("--jobs", type=int, default=1, help="processes writing the phantom")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--child", nargs=3, metavar=("DATA", "N", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2],
                               not args.no_epoch)))
        return
    rows = run(sorted(args.sizes), data=args.data, full_size=args.full_size,
               epoch=not args.no_epoch, jobs=args.jobs)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary(rows)}, indent=2)
                             + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
