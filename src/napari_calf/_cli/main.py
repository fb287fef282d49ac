"""The ``napari-calf`` command line: the core, headless, with tqdm progress.

Never imports napari or Qt. Each subcommand lives in ``napari_calf._cli.<name>``
and exposes ``register(subparsers)`` and ``run(args) -> int``; modules are
imported when the parser is built, but heavy libraries (torch, smp) only inside
``run``, so ``napari-calf --help`` stays fast.

While a subcommand runs, everything written to the terminal passes through
:mod:`._terminal` (control characters of user text made visible; with ``--json -`` the
text goes to standard error). Ctrl-C ends with exit code 130 and one line; once the
program is interrupted or done, a further Ctrl-C exits at once with one more line
instead of a traceback from the interpreter's shutdown.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from .. import __version__
from ..errors import CalfError
from ._terminal import TerminalGuard

#: Subcommands in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("phantom", "analyze", "train", "predict", "evaluate", "compare",
                               "audit")
#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


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


def _exit_at_once(signum: int, frame: object) -> None:
    try:
        os.write(2, b"napari-calf: interrupted again; exiting\n")
    finally:
        os._exit(EXIT_INTERRUPTED)


def _quiet_further_interrupts() -> None:
    """From now on Ctrl-C exits at once, quietly: the work is stopped or done, and a
    KeyboardInterrupt raised in the interpreter's shutdown would print a traceback."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_at_once)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; ``argv`` None reads ``sys.argv`` (the installed program).

    Only the program itself (``argv`` None) changes how a later Ctrl-C is handled; a
    caller passing ``argv`` (a test, a script) keeps its own SIGINT handler.
    """
    as_program = argv is None
    command = None
    code = EXIT_INTERRUPTED
    try:
        with TerminalGuard() as guard:
            parser = build_parser()
            args = parser.parse_args(argv)
            command = getattr(args, "command", None)
            if getattr(args, "json", None) == "-":
                guard.text_to_stderr()
            code = _run(parser, args)
    except KeyboardInterrupt:  # outside a subcommand's own handling, or during it again
        if as_program:
            _quiet_further_interrupts()
        print(f"napari-calf{f' {command}' if command else ''}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if as_program:
            _quiet_further_interrupts()
    return code


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
