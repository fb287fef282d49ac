"""Slice-store preparation at scale: time per case and peak memory for N phantom cases.

Writes a phantom dataset once (the largest N), then for each N prepares the training
slice store of the first N cases in a fresh subprocess (so each N reports its own peak
RSS): areas → filtering → store (on disk, memmap, like a BraTS-sized set would be).

    python benchmarks/data_scale.py                   # N = 25, 50, 100
    python benchmarks/data_scale.py --sizes 5 10 20   # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(data: str, n: int, cache: str) -> None:
    from napari_calf.engine.data import slices_by_case
    from napari_calf.events import drain
    from napari_calf.io.discovery import discover_cases
    from napari_calf.engine.slice_store import iter_build_slice_store
    from napari_calf.calf.filtering import filter_slices
    from napari_calf.calf.areas import iter_dataset_areas

    t0 = time.perf_counter()
    cases = discover_cases(data)[:n]
    areas = drain(iter_dataset_areas(cases))
    keep = filter_slices(areas, empty_fraction=0.1).keep
    store = drain(iter_build_slice_store(cases, slices_by_case(areas.case_ids, areas.slices, keep),
                                         mode="disk", cache_dir=cache))
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"n": n, "seconds": seconds, "slices": len(store),
                      "store_mib": store.nbytes / 2**20, "peak_rss_mib": peak_kib / 1024}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100])
    p.add_argument("--data", type=Path, default=None, help="existing phantom folder to reuse")
    p.add_argument("--child", nargs=3, metavar=("DATA", "N", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "phantom"
        if not (data.exists() and any(data.iterdir())):
            from napari_calf.events import drain
            from napari_calf.phantom.dataset import write_dataset

            t0 = time.perf_counter()
            drain(write_dataset(data, max(args.sizes), seed=0))
            print(f"wrote {max(args.sizes)} phantom cases in {time.perf_counter() - t0:.0f} s")
        print(f"{'N':>5} {'slices':>7} {'store MiB':>10} {'s/case':>8} {'peak RSS MiB':>13}")
        for n in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(data), str(n),
                                  str(Path(tmp) / f"cache{n}")],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['n']:>5} {r['slices']:>7} {r['store_mib']:>10.1f} "
                  f"{r['seconds'] / r['n']:>8.3f} {r['peak_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
