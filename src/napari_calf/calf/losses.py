"""CALF losses: transformed cross-entropy + soft Dice, the smp baselines, and a registry.

The method is CALF_METHOD §4. Notation: z = logit, p = σ(z), y ∈ [0, 1] the target,
s = 2y − 1. Each transformed cross-entropy term CE_T is evaluated per pixel in a form
that is exact and finite for any finite z (float32 σ(17) is exactly 1, so the naive
``atanh(p)``, ``logit(p)``, ``asin(sqrt(p))`` would give inf/NaN):

========  ==========================================================  ===========
T         per-pixel term for a positive pixel (y = 1), f(z)             range
========  ==========================================================  ===========
ln        softplus(−z)  (binary cross-entropy)                          [0, ∞)
log10     softplus(−z) / ln 10                                          [0, ∞)
fisher    ½·softplus(−z + ln 2)  (= atanh(1 − p))                       [0, ∞)
logit     m − clamp(z, −m, m),  m = logit(1 − 1e-6)                     [0, 2m]
arcsine   atan(exp(−z/2))  (= π/2 − asin √p)                            [0, π/2]
========  ==========================================================  ===========

A negative pixel (y = 0) uses f(−z); a soft target uses y·f(z) + (1 − y)·f(−z), exact
for binary y. Fisher is §4's y·atanh(1 − p) + (1 − y)·atanh(p): the literal
−[y·atanh(p) + …] + const would be unbounded below as p → 1. Arcsine is evaluated as
π/4 − s·atan(tanh(z/4)), the same function as §4's two-branch atan(exp(u)) form
(Gudermannian identity) without a branch or anything that can overflow. The total is

    L_CALF = CE_T + dice_weight · SoftDice        (dice_weight = λ, default 1.0)

**With λ = 1 the ``ln`` branch is BCE-Dice, and ``log10`` is BCE-Dice with the
cross-entropy part scaled by 1/ln 10**, so the Dice term weighs relatively more. λ = 0
gives the pure transformed term.

Soft Dice is *batch-pooled* by default: intersection and sums over the whole batch and
all pixels, per channel, smoothing 1e-5 (nnU-Net's 2D default), then averaged over
channels. ``dice_mode="sample"`` pools per sample instead; its gradient vanishes on a
sample whose target is empty, which in our measurements (CALF_METHOD §7) let models
predict tumour on 20–84 % of tumour-free slices, against 4–7 % with batch pooling.

Every loss here (CALF and the smp baselines) takes logits and targets shaped
(B, C, H, W) (binary or multi-label, C ≥ 1; extra spatial axes work too), computes in
float32 with autocast switched off (float64 input stays float64), and returns a
non-negative scalar (the mean over pixels for the cross-entropy terms). Targets must
hold values in [0, 1]; they are not checked per batch because that would cost a device
sync. Gradients flow to the logits only. The arithmetic, with exact hand-written
gradients, is in ``_loss_math``; the smp baselines are wrapped in ``_loss_baselines``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._loss_math import LOGIT_CLAMP, LOGIT_EPS, _check_pair, _float32_region, calf_terms
from ..errors import CalfConfigError
from .rules import DEFAULT_RULES, select_transform

if TYPE_CHECKING:
    from .stats import ImbalanceStats
    from .rules import Rule, Selection

__all__ = [
    "BASELINE_NAMES", "DEFAULT_DICE_SMOOTH", "DEFAULT_DICE_WEIGHT", "DICE_MODES",
    "LOGIT_CLAMP", "LOGIT_EPS", "LOSS_NAMES", "TRANSFORMS", "CALFLoss", "describe_loss",
    "get_loss", "soft_dice_loss", "transformed_ce",
]

#: The five transformed cross-entropy terms (CALF_METHOD §4).
TRANSFORMS: tuple[str, ...] = ("ln", "log10", "fisher", "logit", "arcsine")
#: Everything :func:`get_loss` builds, in the order front ends list them.
LOSS_NAMES: tuple[str, ...] = (
    "calf", "fisher", "logit", "arcsine", "log10", "ln", "bce-dice",
    "bce", "dice", "focal", "tversky", "lovasz",
)
#: The smp baselines among :data:`LOSS_NAMES` (built in ``_loss_baselines``).
BASELINE_NAMES: tuple[str, ...] = ("bce", "dice", "focal", "tversky", "lovasz")
#: How Dice may pool: over the whole batch (default) or per sample.
DICE_MODES: tuple[str, ...] = ("batch", "sample")
#: Dice smoothing per mode when none is given. Both are nnU-Net's 1e-5, the value
#: measured in CALF_METHOD §7; kept apart so that either can be changed on its own.
DEFAULT_DICE_SMOOTH: dict[str, float] = {"batch": 1e-5, "sample": 1e-5}
#: Default weight λ of the Dice term.
DEFAULT_DICE_WEIGHT = 1.0
# LOGIT_EPS (1e-6) and LOGIT_CLAMP = logit(1 − ε) ≈ 13.8155 come from _loss_math.

_ONE_LINE: dict[str, str] = {
    "calf": "automatic: picks one of the transforms below from the skewness and kurtosis "
    "of the training set's tumour sizes (needs the dataset statistics), + Dice",
    "fisher": "Fisher (atanh) transformed cross-entropy + Dice",
    "logit": "logit transformed cross-entropy (logits clamped at ±13.8) + Dice",
    "arcsine": "arcsine (asin √p) transformed cross-entropy, bounded by π/2 + Dice",
    "log10": "log10 cross-entropy + Dice: BCE-Dice with the BCE part scaled by 1/ln 10 "
    "(with dice weight 1)",
    "ln": "ln cross-entropy + Dice: with dice weight 1 this is exactly BCE-Dice",
    "bce-dice": "binary cross-entropy + soft Dice: the usual baseline, and CALF's fallback",
    "bce": "binary cross-entropy alone (smp SoftBCEWithLogitsLoss)",
    "dice": "soft Dice alone, batch-pooled (smp DiceLoss; channels with an empty target "
    "contribute nothing)",
    "focal": "focal loss, gamma 2 (smp FocalLoss): down-weights easy pixels",
    "tversky": "Tversky loss, alpha 0.3 (false positives) / beta 0.7 (false negatives) "
    "(smp TverskyLoss): favours recall of small regions",
    "lovasz": "Lovász hinge (smp LovaszLoss), per channel: a surrogate of IoU",
}


# -- helpers ----------------------------------------------------------------------------
def _check_dice_options(mode: str, smooth: float) -> None:
    if mode not in DICE_MODES:
        raise CalfConfigError(
            f"dice_mode {mode!r} is not one of {', '.join(DICE_MODES)}. Fix: use 'batch' "
            "(pooled over the batch, the default) or 'sample' (per sample)."
        )
    if isinstance(smooth, bool) or not (
        isinstance(smooth, (int, float)) and math.isfinite(smooth) and smooth > 0
    ):
        raise CalfConfigError(
            f"Dice smoothing {smooth!r} must be a finite number > 0 (0 divides 0 by 0 on "
            "an empty target). Fix: use the default 1e-5 or another small positive value."
        )


def _compute_dtype(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """float32 copies (views when already float32); float64 stays float64 (gradcheck)."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return logits.to(dtype), target.to(dtype)


def transformed_ce(logits: Tensor, target: Tensor, transform: str) -> Tensor:
    """The transformed cross-entropy term CE_T, averaged over all pixels.

    Parameters
    ----------
    logits : Tensor
        Raw model output, shape (B, C, H, W), any floating dtype.
    target : Tensor
        Same shape, values in [0, 1] (binary masks, or soft targets).
    transform : str
        One of :data:`TRANSFORMS`.

    Returns
    -------
    Tensor
        Non-negative float32 scalar, finite with a finite gradient for any finite logits.

    Raises
    ------
    CalfConfigError
        Unknown ``transform``.
    CalfInputError
        Shapes that do not match.
    """
    if transform not in TRANSFORMS:
        raise CalfConfigError(
            f"transform {transform!r} is not one of {', '.join(TRANSFORMS)}."
            f"{_close(transform, TRANSFORMS)} Fix: use one of those names."
        )
    _check_pair(logits, target, f"the {transform} cross-entropy")
    with _float32_region(logits):
        z, y = _compute_dtype(logits, target)
        return calf_terms(z, y, transform, 0.0, "batch", 1.0)


def soft_dice_loss(
    logits: Tensor, target: Tensor, *, mode: str = "batch", smooth: float = 1e-5
) -> Tensor:
    """Soft Dice loss 1 − mean over channels of (2·Σpy + smooth) / (Σp + Σy + smooth).

    Parameters
    ----------
    logits, target : Tensor
        Shape (B, C, H, W); targets in [0, 1].
    mode : {"batch", "sample"}
        ``"batch"`` sums over the batch and all pixels per channel (the default: a sample
        with an empty target still gets a gradient against false positives);
        ``"sample"`` sums per sample and channel and averages over both (the gradient
        on an empty-target sample is about smooth / Σp², i.e. nearly none).
    smooth : float
        Added to numerator and denominator, > 0.

    Returns
    -------
    Tensor
        Float32 scalar in [0, 1].
    """
    _check_dice_options(mode, smooth)
    _check_pair(logits, target, "the Dice loss")
    with _float32_region(logits):
        z, y = _compute_dtype(logits, target)
        return calf_terms(z, y, None, 1.0, mode, float(smooth))


def _close(name: object, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


# -- CALF --------------------------------------------------------------------------------
class CALFLoss(nn.Module):
    """L_CALF = CE_T + dice_weight · SoftDice (CALF_METHOD §4).

    Parameters
    ----------
    transform : str
        One of :data:`TRANSFORMS`, or ``"bce-dice"`` (= ``ln`` with a Dice term that is
        always present: a ``dice_weight`` of 0 is raised to 1.0 and :meth:`describe`
        says so, because BCE-Dice without Dice would silently be plain BCE).
    dice_weight : float
        λ ≥ 0, default 1.0. With λ = 1, ``ln`` is BCE-Dice and ``log10`` is BCE-Dice with
        the BCE part scaled by 1/ln 10. λ = 0 gives the pure transformed term.
    dice_mode : {"batch", "sample"}
        How the Dice term pools; see :func:`soft_dice_loss`.
    smooth : float, optional
        Dice smoothing; default :data:`DEFAULT_DICE_SMOOTH` for the mode.

    Attributes
    ----------
    selection : Selection | None
        Set by :meth:`from_stats`: the transform, S, K, the matched rule and the reason.

    Shapes
    ------
    logits, target: (B, C, H, W); output: float32 scalar ≥ 0.
    """

    def __init__(
        self,
        transform: str = "ln",
        *,
        dice_weight: float = DEFAULT_DICE_WEIGHT,
        dice_mode: str = "batch",
        smooth: float | None = None,
    ) -> None:
        super().__init__()
        valid = (*TRANSFORMS, "bce-dice")
        if transform not in valid:
            raise CalfConfigError(
                f"CALF transform {transform!r} is not one of {', '.join(valid)}."
                f"{_close(transform, valid)} Fix: use one of those names."
            )
        if isinstance(dice_weight, bool) or not isinstance(dice_weight, (int, float)) or not (
            math.isfinite(dice_weight) and dice_weight >= 0
        ):
            raise CalfConfigError(
                f"dice_weight {dice_weight!r} must be a finite number ≥ 0. Fix: use 1.0 "
                "(the default), or 0 for the pure transformed cross-entropy."
            )
        smooth = DEFAULT_DICE_SMOOTH.get(dice_mode, 1e-5) if smooth is None else smooth
        _check_dice_options(dice_mode, smooth)
        self.name = transform
        self.transform = "ln" if transform == "bce-dice" else transform
        self.dice_weight_requested = float(dice_weight)
        self.note: str | None = None
        if transform == "bce-dice" and dice_weight == 0:
            dice_weight = 1.0
            self.note = "bce-dice always has a Dice term: dice_weight 0 was raised to 1.0"
        self.dice_weight = float(dice_weight)
        self.dice_mode = dice_mode
        self.smooth = float(smooth)
        self.selection: Selection | None = None

    @classmethod
    def from_stats(
        cls,
        stats: ImbalanceStats,
        *,
        rules: Sequence[Rule] = DEFAULT_RULES,
        dice_weight: float = DEFAULT_DICE_WEIGHT,
        **kw: Any,
    ) -> CALFLoss:
        """Build the loss :func:`~napari_calf.calf.stats.select_transform` picks for ``stats``.

        The :class:`~napari_calf.calf.stats.Selection` is kept in :attr:`selection` and shown
        by :meth:`describe`. ``kw`` goes to the constructor (``dice_mode``, ``smooth``).
        """
        selection = select_transform(stats, rules)
        loss = cls(selection.transform, dice_weight=dice_weight, **kw)
        loss.selection = selection
        return loss

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_pair(logits, target, f"the {self.name} loss")
        with _float32_region(logits):
            z, y = _compute_dtype(logits, target)
            return calf_terms(
                z, y, self.transform, self.dice_weight, self.dice_mode, self.smooth
            )

    def formula(self) -> str:
        """The loss as one readable line, e.g. ``"CE_fisher + 1·Dice(batch, smooth 1e-05)"``."""
        ce = "BCE" if self.transform == "ln" else (
            "BCE / ln 10" if self.transform == "log10" else f"CE_{self.transform}"
        )
        if not self.dice_weight:
            return ce
        return f"{ce} + {self.dice_weight:g}·Dice({self.dice_mode}, smooth {self.smooth:g})"

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for run cards, the CLI and the GUI."""
        equivalence = None
        if self.dice_weight == 1.0 and self.transform == "ln":
            equivalence = "with dice_weight 1 the ln transform is exactly BCE-Dice"
        elif self.dice_weight == 1.0 and self.transform == "log10":
            equivalence = ("with dice_weight 1 the log10 transform is BCE-Dice with the BCE "
                           "part scaled by 1/ln 10 (the Dice term weighs relatively more)")
        return {
            "name": "calf" if self.selection is not None else self.name,
            "transform": self.name,
            "ce_transform": self.transform,
            "dice_weight": self.dice_weight,
            "dice_weight_requested": self.dice_weight_requested,
            "dice_mode": self.dice_mode,
            "smooth": self.smooth,
            "formula": self.formula(),
            "equivalence": equivalence,
            "note": self.note,
            "selection": None if self.selection is None else self.selection.to_dict(),
            "source": "napari_calf.calf.losses",
        }

    def extra_repr(self) -> str:
        return f"{self.formula()!r}"


# -- registry ----------------------------------------------------------------------------
_CALF_OPTIONS = ("dice_weight", "dice_mode", "smooth")


def describe_loss(name: str) -> str:
    """One line of help for registry name ``name`` (for the CLI's ``--help`` and the GUI)."""
    if name not in _ONE_LINE:
        raise _unknown_name(name)
    return _ONE_LINE[name]


def get_loss(
    name: str,
    *,
    stats: ImbalanceStats | None = None,
    rules: Sequence[Rule] = DEFAULT_RULES,
    **kwargs: Any,
) -> nn.Module:
    """Build the loss registered as ``name`` (one of :data:`LOSS_NAMES`).

    Parameters
    ----------
    name : str
        ``"calf"`` picks the transform from ``stats`` with ``rules``; ``"fisher"``,
        ``"logit"``, ``"arcsine"``, ``"log10"``, ``"ln"``, ``"bce-dice"`` build that
        :class:`CALFLoss`; ``"bce"``, ``"dice"``, ``"focal"``, ``"tversky"``,
        ``"lovasz"`` wrap the smp baseline.
    stats : ImbalanceStats, optional
        The training set's size statistics; required by ``"calf"``, ignored otherwise.
    rules : sequence of Rule
        Selection table for ``"calf"``.
    **kwargs
        CALF losses: ``dice_weight``, ``dice_mode``, ``smooth``. Baselines: the smp
        class's own options (e.g. ``gamma`` for focal, ``alpha``/``beta`` for tversky).

    Returns
    -------
    nn.Module
        Called as ``loss(logits, target)``; has ``describe() -> dict``.

    Raises
    ------
    CalfConfigError
        Unknown name (the message lists the valid ones), ``"calf"`` without ``stats``,
        or options the loss does not take.
    """
    if name not in LOSS_NAMES:
        raise _unknown_name(name)
    if name in BASELINE_NAMES:
        from ._loss_baselines import build_baseline

        return build_baseline(name, kwargs)
    unknown = sorted(set(kwargs) - set(_CALF_OPTIONS))
    if unknown:
        raise CalfConfigError(
            f"loss {name!r} does not take {', '.join(map(repr, unknown))}. "
            f"Fix: use only {', '.join(_CALF_OPTIONS)}."
        )
    if name == "calf":
        if stats is None:
            raise CalfConfigError(
                "loss 'calf' chooses its transform from the training set's foreground-size "
                "statistics, and none were given. Fix: pass stats= (from "
                "napari_calf.calf.stats.imbalance_stats, e.g. via `napari-calf analyze`), or name "
                f"a transform directly ({', '.join(TRANSFORMS)}, bce-dice)."
            )
        return CALFLoss.from_stats(stats, rules=rules, **kwargs)
    return CALFLoss(name, **kwargs)


def _unknown_name(name: object) -> CalfConfigError:
    return CalfConfigError(
        f"unknown loss {name!r}.{_close(name, LOSS_NAMES)} Fix: use one of "
        f"{', '.join(LOSS_NAMES)}."
    )
