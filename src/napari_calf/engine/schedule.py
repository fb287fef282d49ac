"""The learning-rate schedule: linear warm-up, then cosine decay.

Its own module so the training loop and anything that plots or tests the schedule
import it without importing the loop's caller (:mod:`.training`).
"""

from __future__ import annotations

import math

__all__ = ["lr_factor"]


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
