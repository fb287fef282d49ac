"""The comparison baselines, taken from ``segmentation_models_pytorch.losses`` as they are.

Each is wrapped in :class:`BaselineLoss` so that it keeps the contract of every loss in
:mod:`napari_calf.calf.losses`: logits and targets shaped (B, C, H, W), float32 with autocast
off, a non-negative float32 scalar, channels treated as independent labels
(multi-label). smp itself is imported only when a baseline is built (it takes seconds). Imported by
:func:`napari_calf.calf.losses.get_loss` when it needs a baseline; use that, not this module.

What smp 0.6.0 does with C > 1, and how each is wrapped:

- ``SoftBCEWithLogitsLoss``: element-wise, any shape; used as is.
- ``DiceLoss`` / ``TverskyLoss``: ``mode="multilabel"`` pools each channel over the batch
  and pixels (``"binary"`` would merge the channels into one); a channel whose target is
  empty in the whole batch contributes 0 (smp's choice).
- ``FocalLoss``: ``mode="multilabel"`` averages per-channel focal losses.
- ``LovaszLoss``: its binary/multilabel hinge flattens *all* channels into one ranking,
  so it is applied per channel here and averaged.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CalfConfigError
from ._loss_math import _check_pair, _float32_region

#: smp class, fixed arguments, our defaults (user-overridable), per-channel application.
_SPECS: dict[str, tuple[str, dict[str, Any], dict[str, Any], bool]] = {
    "bce": ("SoftBCEWithLogitsLoss", {"reduction": "mean"}, {}, False),
    "dice": ("DiceLoss", {"mode": "multilabel", "from_logits": True}, {}, False),
    "focal": ("FocalLoss", {"mode": "multilabel"}, {"gamma": 2.0}, False),
    # Salehi et al. 2017: alpha 0.3 on false positives, beta 0.7 on false negatives.
    "tversky": (
        "TverskyLoss", {"mode": "multilabel", "from_logits": True}, {"alpha": 0.3, "beta": 0.7},
        False,
    ),
    "lovasz": ("LovaszLoss", {"mode": "binary", "from_logits": True}, {}, True),
}
#: Arguments a user may not change: they would break the shared contract.
_LOCKED = {"mode", "from_logits", "reduction", "ignore_index", "classes"}


class BaselineLoss(nn.Module):
    """An smp loss behind the project's loss contract.

    Parameters
    ----------
    name : str
        Registry name (``"bce"``, ``"dice"``, ``"focal"``, ``"tversky"``, ``"lovasz"``).
    loss : nn.Module
        The smp loss.
    params : dict
        The arguments it was built with (shown by :meth:`describe`).
    per_channel : bool
        Apply ``loss`` to each channel separately and average.
    """

    def __init__(
        self, name: str, loss: nn.Module, params: dict[str, Any], *, per_channel: bool
    ) -> None:
        super().__init__()
        self.name = name
        self.loss = loss
        self.params = params
        self.per_channel = per_channel

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_pair(logits, target, f"the {self.name} loss")
        with _float32_region(logits):
            z, y = logits.float(), target.float()
            if self.per_channel:
                loss = torch.stack(
                    [self.loss(z[:, c : c + 1], y[:, c : c + 1]) for c in range(z.shape[1])]
                ).mean()
            else:
                loss = self.loss(z, y)
            # Every baseline is ≥ 0 mathematically; clamp away rounding below zero.
            return loss.float().clamp_min(0.0)

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary: the smp class and the arguments it was built with."""
        return {
            "name": self.name,
            "smp_class": type(self.loss).__name__,
            "params": {k: _json_safe(v) for k, v in self.params.items()},
            "per_channel": self.per_channel,
            "source": "segmentation_models_pytorch.losses",
        }

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def build_baseline(name: str, kwargs: dict[str, Any]) -> BaselineLoss:
    """Build baseline ``name`` with the user's ``kwargs`` (checked against smp's signature)."""
    import segmentation_models_pytorch.losses as smp_losses

    cls_name, fixed, defaults, per_channel = _SPECS[name]
    cls = getattr(smp_losses, cls_name)
    accepted = sorted(
        p for p in inspect.signature(cls.__init__).parameters if p != "self" and p not in _LOCKED
    )
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise CalfConfigError(
            f"loss {name!r} (smp {cls_name}) does not take {', '.join(map(repr, unknown))}. "
            f"Fix: use only {', '.join(accepted) or 'no options'}."
        )
    params = {**defaults, **kwargs}
    try:
        loss = cls(**fixed, **params)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CalfConfigError(
            f"loss {name!r} (smp {cls_name}) refused {params}: {exc}. "
            "Fix: check the values against the smp documentation."
        ) from exc
    return BaselineLoss(name, loss, {**fixed, **params}, per_channel=per_channel)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return repr(value)
