"""Training and inference: slice store, batches, models, checkpoints, the loop, prediction.

Depends on ``calf``, ``io`` and the ground; imports torch inside its files. What may change
here without touching other parts: schedule, augmentation, caching, checkpoint layout.
"""

from __future__ import annotations

from .._lazy import lazy_face

_EXPORTS = {
    "iter_train": "training", "train": "training", "resume_config": "training",
    "plan_resume": "training", "ResumePlan": "training", "MODALITY_ALIASES": "channels",
    "TrainResult": "training_events",
    "build_model": "models", "load_run": "inference", "Prediction": "inference",
    "iter_predict_volume": "inference", "predict_volume": "inference",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
