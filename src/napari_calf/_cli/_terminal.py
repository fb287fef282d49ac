"""What reaches the terminal: user text made harmless, and standard output kept for JSON.

- Rule-table notes, case ids, file names and error messages are the user's (or a
  downloaded dataset's) text; an escape sequence in them would reach the terminal and
  clear it, retitle it or worse. :func:`terminal_text` shows every control character as a
  visible ``\\xNN`` escape instead; :class:`SafeStream` applies it to everything written to
  standard output and error while a subcommand runs, so no print site can forget it.
- ``--json -`` puts the JSON document on standard output; the report text then goes to
  standard error (:func:`json_stream` is where the JSON is written), so
  ``napari-calf analyze DATA --json - | jq`` reads pure JSON.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Any, TextIO

# C0 controls except tab, newline and carriage return (progress bars redraw with \r),
# DEL, C1 controls (\x9b is a one-byte CSI), and the bidirectional overrides that make
# text display in another order than it reads.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """``text`` with every control character shown as a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(_visible, text)


class SafeStream:
    """A text stream that writes :func:`terminal_text` of everything to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_text(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno …
        return getattr(self._stream, name)


_json_out: list[TextIO] = []


def json_stream() -> TextIO:
    """Where ``--json -`` writes: the real standard output while a subcommand runs."""
    return _json_out[-1] if _json_out else sys.stdout


class TerminalGuard:
    """Context manager: standard output and error made safe; see :meth:`text_to_stderr`."""

    def __init__(self) -> None:
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> TerminalGuard:
        self._saved = (sys.stdout, sys.stderr)
        _json_out.append(sys.stdout)
        sys.stdout = SafeStream(sys.stdout)  # type: ignore[assignment]
        sys.stderr = SafeStream(sys.stderr)  # type: ignore[assignment]
        return self

    def text_to_stderr(self) -> None:
        """Send printed text to standard error: standard output is the JSON's alone."""
        sys.stdout = sys.stderr

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            sys.stdout, sys.stderr = self._saved
            _json_out.pop()

