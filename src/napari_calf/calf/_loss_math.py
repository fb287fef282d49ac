"""The arithmetic behind :mod:`napari_calf.calf.losses`: values and exact gradients, fused.

Each transformed cross-entropy term and the soft Dice term is computed here together
with its derivative with respect to the logits, in one forward pass, and wrapped in
one :class:`torch.autograd.Function` (:class:`CalfTerms`). Why not plain autograd: the
stable forms need ``where``/``clamp`` branches whose unused side autograd still
differentiates (an ``inf`` there turns a zero gradient into NaN), and autograd keeps
every intermediate map alive for backward. Writing the derivatives out keeps them
finite by construction, needs one saved map, and makes the backward a single multiply
(``benchmarks/loss_speed.py`` measures the effect). ``gradcheck`` in the tests checks
every derivative against finite differences.

Per-pixel notation: z logit, p = σ(z), y ∈ [0, 1], s = 2y − 1. All maps have the shape
of z; sums run over every element. Works in float32 or float64 (the caller decides).
Public entry points are in :mod:`napari_calf.calf.losses`; nothing here validates input.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CalfInputError

LOGIT_EPS = 1e-6
LOGIT_CLAMP = math.log((1.0 - LOGIT_EPS) / LOGIT_EPS)  # logit(1 − ε) ≈ 13.8155
_LN2 = math.log(2.0)
_LN10 = math.log(10.0)

# Every ``_ce_*`` returns (Σ per-pixel term, map ∝ d term/dz or None, factor): the
# derivative is ``factor · map``, so that the caller folds the factor into its 1/N.
# ``p`` = σ(z) is shared with the Dice term. Sums are reductions rather than written
# maps where no large terms cancel (each pass over the batch costs about as much as the
# arithmetic); the final clamp at 0 in CalfTerms removes rounding below zero.
CETerm = tuple[Tensor, "Tensor | None", float]


def _ce_ln(z: Tensor, y: Tensor, p: Tensor, need_grad: bool) -> CETerm:
    # softplus(z) − y·z = y·softplus(−z) + (1 − y)·softplus(z), per pixel, so a
    # well-classified pixel costs ~0 without a cancellation across the whole sum.
    value = F.softplus(z).addcmul_(y, z, value=-1.0).sum()
    return value, torch.sub(p, y) if need_grad else None, 1.0


def _ce_log10(z: Tensor, y: Tensor, p: Tensor, need_grad: bool) -> CETerm:
    value, grad, _ = _ce_ln(z, y, p, need_grad)
    return value / _LN10, grad, 1.0 / _LN10


def _ce_fisher(z: Tensor, y: Tensor, p: Tensor, need_grad: bool) -> CETerm:
    # y·atanh(1 − p) + (1 − y)·atanh(p) with atanh(σ(w)) = ½·softplus(w + ln 2):
    # ½·[b + y·(a − b)], a = softplus(ln 2 − z), b = softplus(ln 2 + z); d softplus = σ.
    # For y = 1 and large z, b − (b − a) cancels: absolute error ~1e-7·b, harmless.
    neg = torch.sub(_LN2, z)
    pos = z + _LN2
    b = F.softplus(pos)
    a_minus_b = F.softplus(neg).sub_(b)
    value = (b.sum() + torch.vdot(y.reshape(-1), a_minus_b.reshape(-1))) * 0.5
    if not need_grad:
        return value, None, 0.5
    s1, s2 = neg.sigmoid_(), pos.sigmoid_()
    # d/dz = ½·[(1 − y)·σ(ln 2 + z) − y·σ(ln 2 − z)] = ½·[σ2 − y·(σ1 + σ2)]
    return value, s2.sub_(s1.add_(s2).mul_(y)), 0.5


def _ce_logit(z: Tensor, y: Tensor, p: Tensor, need_grad: bool) -> CETerm:
    # −[y·logit(p) + (1 − y)·logit(1 − p)] + m = m − s·z, with z clamped to ±m (per pixel
    # in [0, 2m]); linear in y, so exact for soft targets. Gradient −s inside the clamp,
    # 0 outside; like torch.clamp, the bounds themselves pass the gradient.
    m = LOGIT_CLAMP
    clamped = z.clamp(-m, m)
    s = torch.mul(y, 2.0).sub_(1.0)
    value = z.numel() * m - torch.vdot(s.reshape(-1), clamped.reshape(-1))
    if not need_grad:
        return value, None, -1.0
    return value, s.mul_(clamped == z), -1.0


def _ce_arcsine(z: Tensor, y: Tensor, p: Tensor, need_grad: bool) -> CETerm:
    # f(z) = atan(exp(u)), u = −z/2, is the term of a positive pixel, f(−z) = π/2 − f(z),
    # so y·f(z) + (1 − y)·f(−z) = π/4 − s·atan(tanh(z/4)) by the Gudermannian identity
    # atan(eᵘ) = π/4 + atan(tanh(u/2)). Same function as CALF_METHOD §4's two-branch
    # form (atan(eᵘ), or π/2 − atan(e⁻ᵘ) where u > 0) but with nothing that can overflow
    # and no branch: measured 2–3× faster on the CPU than exp/atan/where.
    g = torch.mul(z, 0.25).tanh_().atan_()
    value = z.numel() * (math.pi / 4) - (2.0 * torch.vdot(y.reshape(-1), g.reshape(-1)) - g.sum())
    if not need_grad:
        return value, None, 1.0
    # d/dz = (2y − 1)·f'(z), f'(z) = −¼·sech(z/2) = −½·t/(1 + t²) with t = exp(−|z|/2) ≤ 1:
    # accurate where σ(z) has saturated (z ≥ 17), and free of abs() at 0 (t is even in z).
    t = z.abs().mul_(-0.5).exp_()
    return value, t.div_(torch.mul(t, t).add_(1.0)).mul_(torch.sub(0.5, y)), 1.0


CE_TERMS = {"ln": _ce_ln, "log10": _ce_log10, "fisher": _ce_fisher,
            "logit": _ce_logit, "arcsine": _ce_arcsine}


def dice_terms(
    p: Tensor, y: Tensor, mode: str, smooth: float, *, need_grad: bool,
    weight: float = 1.0, into: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Soft Dice loss, and ``weight`` × its derivative with respect to the logits.

    loss = 1 − mean_k score_k, score_k = (2·I_k + smooth) / (P_k + Y_k + smooth), where k
    runs over channels (``mode="batch"``: sums over batch and pixels) or over
    (sample, channel) pairs (``mode="sample"``). dloss/dp_j = (score_k − 2·y_j) /
    (K·denom_k), times σ'(z) = p·(1 − p). The gradient is added to ``into`` when given.
    """
    batch = mode == "batch"
    dims = (0, *range(2, p.dim())) if batch else tuple(range(2, p.dim()))
    if batch and p.shape[1] == 1:  # a dot product: no temporary map
        intersection = torch.vdot(p.reshape(-1), y.reshape(-1)).reshape(1)
    else:
        intersection = (p * y).sum(dims)
    denom = p.sum(dims).add_(y.sum(dims)).add_(smooth)
    score = intersection.mul_(2.0).add_(smooth).div_(denom)
    value = 1.0 - score.mean()
    if not need_grad:
        return value, None
    bshape = (*((1, -1) if batch else score.shape), *([1] * (p.dim() - 2)))
    scale = denom.mul_(score.numel()).reciprocal_()  # 1 / (K·denom)
    coef = torch.mul(y, (-2.0 * weight * scale).reshape(bshape)).add_(
        (weight * score * scale).reshape(bshape))
    dsigmoid = torch.sub(1.0, p).mul_(p)
    if into is None:
        return value, coef.mul_(dsigmoid)
    return value, into.addcmul_(coef, dsigmoid)


class CalfTerms(torch.autograd.Function):
    """mean CE_T(z, y) + dice_weight · Dice(σ(z), y); CE_T omitted when transform is None.

    Gradient with respect to ``z`` only (targets are data, not parameters). Use it
    through :func:`calf_terms`.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, z: Tensor, y: Tensor, transform: str | None, dice_weight: float,
        dice_mode: str, smooth: float, want_grad: bool,
    ) -> Tensor:
        need_grad = want_grad and bool(ctx.needs_input_grad[0])
        p = torch.sigmoid(z)
        value = z.new_zeros(())
        grad: Tensor | None = None
        if transform is not None:
            total, grad, factor = CE_TERMS[transform](z, y, p, need_grad)
            value = total / z.numel()
            if grad is not None:
                grad.mul_(factor / z.numel())
        if dice_weight:
            dice, grad = dice_terms(p, y, dice_mode, smooth, need_grad=need_grad,
                                    weight=dice_weight, into=grad)
            value = value + dice_weight * dice
        ctx.save_for_backward(grad if grad is not None else z.new_zeros(()))
        # Every term is ≥ 0 per pixel; the clamp only removes rounding below zero.
        return value.clamp_min(0.0)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None, None, None


def calf_terms(
    z: Tensor, y: Tensor, transform: str | None, dice_weight: float, dice_mode: str,
    smooth: float,
) -> Tensor:
    """Apply :class:`CalfTerms`, computing the gradient map only when it can be used."""
    # Inside forward grad mode is always off, so whether a gradient will be wanted (not
    # under torch.no_grad, e.g. for a validation loss) is decided here.
    want_grad = torch.is_grad_enabled() and z.requires_grad
    return CalfTerms.apply(z, y, transform, dice_weight, dice_mode, smooth, want_grad)


# ------------------------------------------------------------------ shared checks
def _float32_region(tensor: Tensor) -> AbstractContextManager[Any]:
    """A context with autocast off on ``tensor``'s device, so losses compute in float32."""
    device_type = tensor.device.type
    is_available = getattr(torch.amp, "is_autocast_available", None)  # torch ≥ 2.4
    if (is_available(device_type) if is_available else device_type in ("cpu", "cuda")):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


def _check_pair(logits: Tensor, target: Tensor, what: str) -> None:
    """Refuse logits/targets a loss cannot pair pixel by pixel."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise CalfInputError(
            None,
            f"{what} got {type(logits).__name__} and {type(target).__name__}, not tensors.",
            "pass torch tensors: logits and targets, both shaped (B, C, H, W).",
        )
    if logits.dim() < 3 or logits.shape != target.shape:
        raise CalfInputError(
            None,
            f"{what} got logits of shape {tuple(logits.shape)} and targets of shape "
            f"{tuple(target.shape)}; they must be equal and at least (B, C, H).",
            "give targets the model output's shape (B, C, H, W): one channel per label, "
            "values in [0, 1] (add the channel axis with target.unsqueeze(1)).",
        )
    if not logits.is_floating_point():
        raise CalfInputError(
            None,
            f"{what} got integer logits ({logits.dtype}).",
            "pass the model's raw (floating-point) output, before any sigmoid or threshold.",
        )
