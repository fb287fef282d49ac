"""Helpers shared by the engine subcommands (analyze, train, predict, evaluate).

Imported when the parser is built, so nothing heavy here: argparse types, the data
and filter options, and writing ``--json`` output.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ._terminal import json_stream

TARGETS = ("wt", "tc", "et")  # = napari_calf.calf.stats.TARGETS (not imported: keeps --help fast)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small (at least 1)")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (use 0 or more)")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (use 0 or more)")
    return value


def fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def open_fraction(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be strictly between 0 and 1")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=TARGETS, default="wt",
                        help="wt = whole tumour (default), tc = tumour core, et = enhancing tumour")


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """The dataset-filtering options of CALF_METHOD §5 (shared by analyze and train)."""
    g = parser.add_argument_group("slice filtering (before the statistics)")
    g.add_argument("--empty-fraction", type=fraction, default=0.1, metavar="F",
                   help="share of tumour-free slices kept (default 0.1)")
    g.add_argument("--min-area", type=non_negative_float, default=None, metavar="A",
                   help="drop slices with less foreground than A (listed for review; off by default)")
    g.add_argument("--outlier-iqr", type=positive_float, default=None, metavar="K",
                   help="flag sizes above Q3 + K*IQR for review (off by default)")
    g.add_argument("--drop-outliers", action="store_true",
                   help="drop the flagged outliers instead of only listing them")
    g.add_argument("--rules", type=Path, default=None, metavar="RULES.json",
                   help="selection rule table to use instead of the default (see `analyze --json`)")


def add_channel_order_arg(parser: argparse.ArgumentParser) -> None:
    """``--channel-order`` (predict, evaluate): how input files reach the run's channels."""
    parser.add_argument(
        "--channel-order", choices=("names", "positional"), default="names",
        help="names (default): match each file to the run's modality by its name, with the "
             "aliases t1=t1n=t1w, t1ce=t1c=t1gd, t2=t2w, flair=t2f, and refuse files that do "
             "not match; positional: take the files (or a 4D file's channels) in the order "
             "given, which must be the run's")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=str, default=None, metavar="FILE",
                        help="also write the results as JSON to FILE ('-' for standard output)")


def write_json_output(target: str | None, data: Any, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``target`` (``'-'``: stdout) as JSON; never clobber unless asked."""
    if not target:
        return
    from ..engine.checkpoints import _jsonable
    from ..io.files import write_text_atomic
    from ..errors import CalfFileExistsError

    text = json.dumps(data, indent=2, default=_jsonable, allow_nan=False)
    if target == "-":  # standard output is the JSON's alone (the text went to stderr)
        stream = json_stream()
        stream.write(text + "\n")
        stream.flush()
        return
    path = Path(target).expanduser()
    if path.exists() and not overwrite:
        raise CalfFileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text + "\n")


def check_outputs(outputs: dict[str, str | Path | None]) -> None:
    """Refuse, before any work, output options that name one file twice or that cannot be
    written (read-only or missing permission), so the user learns it in a second, not
    after inference or training.

    Parameters
    ----------
    outputs : dict
        Option -> path (``None`` and ``'-'``, standard output, are skipped), e.g.
        ``{"--out": args.out, "--probabilities": args.probabilities, "--json": args.json}``.

    Raises
    ------
    CalfConfigError
        Two options name the same file (also through ``..`` or a symbolic link).
    CalfInputError
        A folder that cannot take its file (names the file and why).
    """
    from ..errors import CalfConfigError
    from ..io.files import check_writable

    given = {opt: Path(p).expanduser() for opt, p in outputs.items() if p and str(p) != "-"}
    seen: dict[Path, str] = {}
    for option, path in given.items():
        key = path.resolve()
        if key in seen:
            raise CalfConfigError(
                f"{seen[key]} and {option} name the same file ({path}): the second output "
                f"would overwrite the first. Fix: give {option} another file name."
            )
        seen[key] = option
    for path in given.values():
        check_writable(path)


def clean_json(obj: Any) -> Any:
    """Replace NaN/inf by None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
