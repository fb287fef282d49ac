"""Is a run folder usable? Cheap checks a study runs on every run it looks at.

A run whose card says finished can still be unusable: weights truncated by a failed copy,
a card that is not a run card. :func:`run_damage` says what is wrong (or None), so that
``study.compare`` lists such a run instead of aborting the report, and trains it again on
rerun instead of skipping it as finished.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.checkpoints import BEST_WEIGHTS, RUN_CARD, check_safetensors, read_json
from ..errors import CalfCheckpointError

__all__ = ["FINISHED", "weights_damage", "run_damage"]

#: Run-card statuses of a run that needs no more training.
FINISHED = ("finished", "early-stopped")


def weights_damage(run_dir: str | Path) -> str | None:
    """What is wrong with a run's best weights file, or None when it can be loaded.

    Cheap (the header is parsed and checked against the file's length, no tensor is
    read), so it runs for every run a study looks at.
    """
    path = Path(run_dir) / BEST_WEIGHTS
    try:
        check_safetensors(path)
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy"):
            pass
    except CalfCheckpointError as exc:
        return str(exc).split(" Fix:")[0]
    except Exception as exc:  # SafetensorError, OSError: the file does not hold what it says
        return f"{path}: damaged ({exc})"
    return None


def run_damage(folder: Path) -> str | None:
    """Why a run folder whose card says finished cannot be reported, or None."""
    try:
        card = read_json(folder / RUN_CARD)
    except CalfCheckpointError as exc:
        return str(exc).split(" Fix:")[0]
    if not isinstance(card, dict):
        return f"{folder / RUN_CARD} is not a run card (a JSON {type(card).__name__}, not an object)"
    if card.get("status") in FINISHED and (folder / BEST_WEIGHTS).is_file():
        return weights_damage(folder)
    return None
