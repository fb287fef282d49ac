"""CALF losses, the smp baselines and the registry (CALF_METHOD §4).

References are independent of the implementation: per-pixel definitions evaluated
with ``math`` at moderate logits, ``F.binary_cross_entropy_with_logits``, smp's
``DiceLoss``, finite differences (``gradcheck``), and ``select_transform``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_calf.errors import CalfConfigError, CalfInputError
from napari_calf.calf._loss_math import LOGIT_CLAMP
from napari_calf.calf.losses import LOSS_NAMES, TRANSFORMS, CALFLoss, describe_loss, get_loss, soft_dice_loss, transformed_ce
from napari_calf.calf.stats import imbalance_stats
from napari_calf.calf.rules import select_transform

# 2×1×2×2 example: moderate logits, where the naive definitions are accurate.
Z_HAND = [[[[0.5, -1.2], [2.0, -0.3]]], [[[1.5, -2.5], [0.1, 3.0]]]]
Y_HAND = [[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]]
EXTREME_Z = (1e4, -1e4, 50.0, -50.0, 17.0, -17.0, 0.0)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _atanh(x: float) -> float:
    return 0.5 * math.log((1 + x) / (1 - x))


def _definition(transform: str, z: float, y: float) -> float:
    """The per-pixel term straight from its definition in CALF_METHOD §4."""
    p = _sigmoid(z)
    if transform == "fisher":  # y·atanh(1 − p) + (1 − y)·atanh(p) (§4 table, exact form)
        return y * _atanh(1 - p) + (1 - y) * _atanh(p)
    transforms = {
        "ln": (math.log, 0.0),
        "log10": (math.log10, 0.0),
        "logit": (lambda q: math.log(q / (1 - q)), math.log((1 - 1e-6) / 1e-6)),
        "arcsine": (lambda q: math.asin(math.sqrt(q)), math.pi / 2),
    }
    t, const = transforms[transform]
    return -(y * t(p) + (1 - y) * t(1 - p)) + const


def _dice_by_hand(z: np.ndarray, y: np.ndarray, dims: tuple[int, ...], smooth: float) -> float:
    p = 1.0 / (1.0 + np.exp(-z))
    score = (2 * (p * y).sum(dims) + smooth) / (p.sum(dims) + y.sum(dims) + smooth)
    return float(1.0 - score.mean())


def _batch(shape: tuple[int, ...] = (3, 2, 8, 8), scale: float = 3.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(shape, generator=gen)
    y = (torch.rand(shape, generator=gen) > 0.7).float()
    return z, y


def _right_skewed_stats():
    sizes = np.random.default_rng(1).lognormal(mean=5.0, sigma=1.0, size=300)
    return imbalance_stats(sizes, n_empty=40)


def _build(name: str) -> torch.nn.Module:
    return get_loss(name, stats=_right_skewed_stats() if name == "calf" else None)


# -- values against hand-computed definitions ----------------------------------------------
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_transformed_ce_matches_its_definition(transform: str) -> None:
    z, y = torch.tensor(Z_HAND), torch.tensor(Y_HAND)
    pixels = [(zi, yi) for zi, yi in zip(np.ravel(Z_HAND), np.ravel(Y_HAND))]
    expected = sum(_definition(transform, zi, yi) for zi, yi in pixels) / len(pixels)
    got = transformed_ce(z, y, transform)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # the same term through CALFLoss with the Dice term switched off
    assert float(CALFLoss(transform, dice_weight=0)(z, y)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_calf_loss_is_ce_plus_weighted_batch_dice(transform: str) -> None:
    z, y = torch.tensor(Z_HAND), torch.tensor(Y_HAND)
    pixels = list(zip(np.ravel(Z_HAND), np.ravel(Y_HAND)))
    ce = sum(_definition(transform, zi, yi) for zi, yi in pixels) / len(pixels)
    dice = _dice_by_hand(np.array(Z_HAND), np.array(Y_HAND), (0, 2, 3), 1e-5)
    assert float(CALFLoss(transform)(z, y)) == pytest.approx(ce + dice, rel=1e-5)
    assert float(CALFLoss(transform, dice_weight=0.25)(z, y)) == pytest.approx(
        ce + 0.25 * dice, rel=1e-5
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_soft_targets_are_the_y_weighted_combination(transform: str) -> None:
    z = torch.tensor(Z_HAND)
    y = torch.tensor([[[[0.3, 0.9], [0.5, 0.0]]], [[[1.0, 0.2], [0.7, 0.45]]]])
    pixels = list(zip(np.ravel(Z_HAND), np.ravel(y.numpy())))
    expected = sum(
        yi * _definition(transform, zi, 1.0) + (1 - yi) * _definition(transform, zi, 0.0)
        for zi, yi in pixels
    ) / len(pixels)
    assert float(transformed_ce(z, y, transform)) == pytest.approx(expected, rel=1e-5)


def test_ln_is_binary_cross_entropy_and_log10_is_it_over_ln10() -> None:
    z, y = _batch(scale=6.0)
    soft = torch.rand(z.shape, generator=torch.Generator().manual_seed(3))
    for target in (y, soft):
        bce = F.binary_cross_entropy_with_logits(z, target)
        torch.testing.assert_close(transformed_ce(z, target, "ln"), bce)
        torch.testing.assert_close(transformed_ce(z, target, "log10"), bce / math.log(10))


def test_bce_dice_is_bce_plus_smp_dice() -> None:
    from segmentation_models_pytorch.losses import DiceLoss

    z, y = _batch(shape=(4, 3, 16, 16))
    # smp's score is (I + s)/((P + Y)/2 + s): its smoothing s is half of ours.
    smp_dice = DiceLoss(mode="multilabel", from_logits=True, smooth=0.5e-5, eps=0.0)
    reference = F.binary_cross_entropy_with_logits(z, y) + smp_dice(z, y)
    torch.testing.assert_close(get_loss("bce-dice")(z, y), reference)
    torch.testing.assert_close(get_loss("ln")(z, y), reference)  # λ = 1: ln is BCE-Dice


def test_sample_dice_matches_hand_computation() -> None:
    z, y = _batch(shape=(3, 2, 6, 6))
    y[1] = 0.0  # one sample with an empty target
    expected = _dice_by_hand(z.double().numpy(), y.double().numpy(), (2, 3), 1e-3)
    got = soft_dice_loss(z, y, mode="sample", smooth=1e-3)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    expected_batch = _dice_by_hand(z.double().numpy(), y.double().numpy(), (0, 2, 3), 1e-5)
    assert float(soft_dice_loss(z, y)) == pytest.approx(expected_batch, rel=1e-5)


# -- the contract every registry loss keeps ---------------------------------------------
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_is_a_non_negative_float32_scalar(name: str) -> None:
    loss = _build(name)
    gen = torch.Generator().manual_seed(7)
    for scale in (0.01, 1.0, 10.0, 100.0):
        z = scale * torch.randn(2, 1, 8, 8, generator=gen)
        for y in ((torch.rand(z.shape, generator=gen) > 0.6).float(), torch.zeros(z.shape),
                  torch.ones(z.shape), (z > 0).float()):  # incl. a perfect prediction
            value = loss(z, y)
            assert value.shape == () and value.dtype == torch.float32
            assert float(value) >= 0.0, f"{name}: {float(value)} at scale {scale}"


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_is_finite_with_finite_gradient_at_extreme_logits(name: str) -> None:
    loss = _build(name)
    values = torch.tensor(EXTREME_Z)
    z = values.repeat(4).reshape(2, 1, 2, 7).clone().requires_grad_()
    y = torch.tensor([1.0, 0.0]).repeat_interleave(7).repeat(2).reshape(2, 1, 2, 7)
    value = loss(z, y)
    value.backward()
    assert torch.isfinite(value), f"{name}: loss {value}"
    assert torch.isfinite(z.grad).all(), f"{name}: gradient {z.grad}"


def test_extreme_logits_give_the_exact_limits() -> None:
    # one wrong pixel at |z| = 1e4: the limits of each term (naive forms give inf/NaN)
    z, y = torch.tensor([[[[-1e4]]]]), torch.tensor([[[[1.0]]]])
    expected = {"ln": 1e4, "log10": 1e4 / math.log(10), "fisher": (1e4 + math.log(2)) / 2,
                "logit": 2 * LOGIT_CLAMP, "arcsine": math.pi / 2}
    for transform, limit in expected.items():
        assert float(transformed_ce(z, y, transform)) == pytest.approx(limit, rel=1e-6)


def test_saturated_sigmoid_keeps_the_arcsine_gradient() -> None:
    # float32 σ(17) == 1, yet the arcsine term still pulls: d/dz = −½·t/(1 + t²), t = e^(−z/2)
    z = torch.tensor([[[[17.0]]]], requires_grad=True)
    transformed_ce(z, torch.ones_like(z), "arcsine").backward()
    t = math.exp(-8.5)
    assert float(z.grad) == pytest.approx(-0.5 * t / (1 + t * t), rel=1e-4)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_validation_under_no_grad_gives_the_training_value(mode: str) -> None:
    z, y = _batch()
    z.requires_grad_()
    for transform in TRANSFORMS:
        loss = CALFLoss(transform, dice_mode=mode)
        with torch.no_grad():  # no gradient map is computed on this path
            evaluated = loss(z, y)
        assert not evaluated.requires_grad
        torch.testing.assert_close(evaluated, loss(z, y).detach())


def test_logit_term_saturates_beyond_its_clamp() -> None:
    # m − s·clamp(z, −m, m): slope −s inside ±13.8, flat (no gradient) outside
    z = torch.tensor([[[[-20.0, -5.0, 5.0, 20.0]]]], requires_grad=True)
    y = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    transformed_ce(z, y, "logit").backward()
    torch.testing.assert_close(z.grad, torch.tensor([[[[0.0, -0.25, 0.25, 0.0]]]]))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_gradients_match_finite_differences(transform: str) -> None:
    gen = torch.Generator().manual_seed(11)
    # inside the logit clamp (±13.8), where every term is smooth; z = 0 included
    z = (4 * torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64))
    z[0, 0, 0, 0] = 0.0
    z.requires_grad_()
    binary = (torch.rand(z.shape, generator=gen) > 0.5).double()
    soft = torch.rand(z.shape, generator=gen, dtype=torch.float64)
    for y in (binary, soft):
        assert torch.autograd.gradcheck(lambda q: transformed_ce(q, y, transform), (z,))
        for mode in ("batch", "sample"):
            full = CALFLoss(transform, dice_weight=0.7, dice_mode=mode, smooth=1e-3)
            assert torch.autograd.gradcheck(lambda q: full(q, y), (z,))


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_dice_gradient_matches_finite_differences(mode: str) -> None:
    gen = torch.Generator().manual_seed(5)
    z = (3 * torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    y = (torch.rand(z.shape, generator=gen) > 0.6).double()
    y[2] = 0.0  # an empty sample
    assert torch.autograd.gradcheck(lambda q: soft_dice_loss(q, y, mode=mode), (z,))


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_half_precision_inputs_give_a_float32_loss(name: str, dtype) -> None:
    loss = _build(name)
    z, y = _batch(shape=(2, 1, 8, 8))
    conv = torch.nn.Conv2d(1, 1, 1)
    with torch.autocast("cpu", dtype=dtype):
        logits = conv(z)  # a half-precision model output, as in mixed-precision training
        assert logits.dtype == dtype
        value = loss(logits, y.to(dtype))
    assert value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(conv.weight.grad).all()
    # computed in float32: equal to the loss of the same (rounded) logits without autocast
    reference = loss(logits.detach().float(), y)
    assert float(value.detach()) == pytest.approx(float(reference), rel=1e-5, abs=1e-6)


# -- batch-pooled versus per-sample Dice (CALF_METHOD §4, §7) ------------------------------
def test_batch_dice_penalises_false_positives_on_an_empty_slice_more() -> None:
    z = torch.full((2, 1, 16, 16), -6.0)
    y = torch.zeros_like(z)
    y[0, 0, 4:10, 4:10] = 1.0
    z[0, 0, 4:10, 4:10] = 4.0  # sample 0: tumour found
    z[1, 0, 2:5, 2:5] = 2.0  # sample 1 has no tumour: 9 false-positive pixels
    grads = {}
    for mode in ("batch", "sample"):
        logits = z.clone().requires_grad_()
        soft_dice_loss(logits, y, mode=mode).backward()
        grads[mode] = float(logits.grad[1, 0, 2:5, 2:5].sum())
    # both push the false positives down, but per-sample Dice barely: its gradient on an
    # empty target is ~smooth / Σp², which is what let models predict tumour everywhere
    assert grads["batch"] > 0 and grads["sample"] >= 0
    assert grads["batch"] > 1000 * grads["sample"]


# -- multi-label -----------------------------------------------------------------------
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_multilabel_channels_are_independent_labels(name: str) -> None:
    loss = _build(name)
    z, y = _batch(shape=(2, 3, 8, 8), seed=4)
    y[:, 1, 2:5, 2:5] = 1.0  # every channel has foreground somewhere in the batch
    whole = loss(z, y)
    per_channel = torch.stack([loss(z[:, c : c + 1], y[:, c : c + 1]) for c in range(3)])
    assert whole.shape == ()
    torch.testing.assert_close(whole, per_channel.mean(), rtol=1e-5, atol=1e-6)


# -- CALFLoss options and describe() -----------------------------------------------------
def test_describe_is_json_safe_and_names_the_bce_dice_equivalence() -> None:
    for name in LOSS_NAMES:
        json.dumps(_build(name).describe())
    ln = CALFLoss("ln").describe()
    assert "BCE-Dice" in ln["equivalence"] and ln["dice_weight"] == 1.0
    assert "1/ln 10" in CALFLoss("log10").describe()["equivalence"]
    assert CALFLoss("ln", dice_weight=0).describe()["equivalence"] is None
    assert "BCE-Dice" in describe_loss("ln") and "1/ln 10" in describe_loss("log10")


def test_bce_dice_always_keeps_its_dice_term() -> None:
    z, y = _batch()
    forced = CALFLoss("bce-dice", dice_weight=0)
    assert forced.dice_weight == 1.0 and "raised to 1.0" in forced.describe()["note"]
    torch.testing.assert_close(forced(z, y), CALFLoss("ln")(z, y))
    assert CALFLoss("bce-dice", dice_weight=0.5).dice_weight == 0.5


@pytest.mark.parametrize(
    "kwargs", [{"dice_weight": -1.0}, {"dice_weight": float("nan")}, {"dice_mode": "pixel"},
               {"smooth": 0.0}, {"smooth": -1e-5}]
)
def test_bad_options_are_refused_with_the_fix(kwargs: dict) -> None:
    with pytest.raises(CalfConfigError, match="Fix:"):
        CALFLoss("fisher", **kwargs)


def test_mismatched_shapes_name_both_shapes() -> None:
    z = torch.zeros(2, 1, 8, 8)
    for name in ("fisher", "dice"):
        with pytest.raises(CalfInputError, match=r"\(2, 8, 8\).*Fix:"):
            get_loss(name)(z, torch.zeros(2, 8, 8))


# -- the registry -------------------------------------------------------------------------
def test_calf_selects_what_select_transform_says() -> None:
    stats = _right_skewed_stats()
    assert stats.skewness is not None and stats.skewness >= 1  # right-skewed sample
    expected = select_transform(stats)
    loss = get_loss("calf", stats=stats, dice_mode="sample")
    assert isinstance(loss, CALFLoss)
    assert loss.name == expected.transform and loss.selection == expected
    assert loss.dice_mode == "sample"
    card = loss.describe()
    assert card["name"] == "calf" and card["transform"] == expected.transform
    assert card["selection"]["reason"] == expected.reason
    z, y = _batch()
    torch.testing.assert_close(loss(z, y), CALFLoss(expected.transform, dice_mode="sample")(z, y))


def test_calf_with_undefined_statistics_falls_back_to_bce_dice() -> None:
    loss = CALFLoss.from_stats(imbalance_stats(np.array([10.0, 12.0]), n_empty=5))
    assert loss.name == "bce-dice" and loss.selection is not None
    assert loss.describe()["selection"]["reason"]


def test_calf_without_stats_explains_what_to_pass() -> None:
    with pytest.raises(CalfConfigError, match="stats="):
        get_loss("calf")


def test_unknown_name_lists_valid_names_and_a_close_match() -> None:
    with pytest.raises(CalfConfigError) as info:
        get_loss("fischer")
    message = str(info.value)
    assert "'fisher'" in message and all(name in message for name in LOSS_NAMES)
    with pytest.raises(CalfConfigError, match="lovasz"):
        describe_loss("nope")


def test_unknown_options_are_refused_with_the_accepted_ones() -> None:
    with pytest.raises(CalfConfigError, match="dice_weight, dice_mode, smooth"):
        get_loss("arcsine", gamma=2.0)
    with pytest.raises(CalfConfigError, match="gamma"):
        get_loss("focal", dice_weight=1.0)
    with pytest.raises(CalfConfigError, match="mode"):
        get_loss("dice", mode="binary")  # fixed: it would break the multi-label contract
    focal = get_loss("focal", gamma=3.0)
    assert focal.describe()["params"]["gamma"] == 3.0


def test_baselines_are_smp_losses_with_their_values() -> None:
    z, y = _batch(shape=(2, 1, 8, 8))
    torch.testing.assert_close(get_loss("bce")(z, y), F.binary_cross_entropy_with_logits(z, y))
    p = torch.sigmoid(z)
    hand_tversky = 1 - (p * y).sum() / ((p * y).sum() + 0.3 * (p * (1 - y)).sum()
                                       + 0.7 * ((1 - p) * y).sum())
    torch.testing.assert_close(get_loss("tversky")(z, y), hand_tversky, rtol=1e-5, atol=1e-6)
    for name in ("bce", "dice", "focal", "tversky", "lovasz"):
        assert get_loss(name).describe()["source"] == "segmentation_models_pytorch.losses"


def test_every_name_has_one_line_of_help() -> None:
    for name in LOSS_NAMES:
        help_text = describe_loss(name)
        assert help_text and "\n" not in help_text


def test_importing_losses_does_not_import_smp() -> None:
    code = ("import sys, napari_calf.calf.losses; "
            "print('segmentation_models_pytorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "False"
