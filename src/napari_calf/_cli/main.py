"""The ``napari-calf`` command line: the core, headless, with tqdm progress.

Never imports napari or Qt. Each subcommand lives in ``napari_calf._cli.<name>``
and exposes ``register(subparsers)`` and ``run(args) -> int``; modules are
imported when the parser is built, but heavy libraries (torch, smp) only inside
``run``, so ``napari-calf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import CalfError

#: Subcommands in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("phantom", "analyze", "train", "predict", "evaluate", "compare",
                               "audit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-calf",
        description=(
            "CALF: conditionally adaptive loss for class-imbalanced segmentation. "
            "The same core the napari widgets use, headless."
        ),
    )
    parser.add_argument("--version", action="version", version=f"napari-calf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"napari_calf._cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"napari_calf._cli.{name}":
                raise
            continue  # subcommand not part of this build
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except CalfError as exc:
        if args.debug:
            raise
        print(f"napari-calf {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"napari-calf {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug: say so in one paragraph
        if args.debug:
            raise
        print(
            f"napari-calf {args.command}: unexpected error ({type(exc).__name__}: {exc}). "
            "Run again with --debug for the full traceback and report it.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
