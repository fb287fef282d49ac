"""Segmentation networks from segmentation-models-pytorch, by name.

``build_model("unet", "resnet34", in_channels=4)`` gives any smp architecture with any
smp encoder. Wrong names are refused with the list of valid ones and the closest
match. Nothing is downloaded unless ``encoder_weights="imagenet"`` is asked for, and
then a missing network is reported plainly with the ways forward.

torch and smp are imported inside the functions: smp takes seconds to import and the
GUI must start without it.
"""

from __future__ import annotations

import difflib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import CalfConfigError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

log = logging.getLogger(__name__)

#: Canonical smp class names; lookups are case-insensitive and ignore "-", "_" and "+".
ARCHITECTURES: tuple[str, ...] = (
    "Unet",
    "UnetPlusPlus",
    "FPN",
    "DeepLabV3",
    "DeepLabV3Plus",
    "Linknet",
    "PSPNet",
    "MAnet",
    "PAN",
    "UPerNet",
    "Segformer",
)

_ALIASES = {"unet++": "unetplusplus", "deeplabv3+": "deeplabv3plus"}

# Architectures that take `encoder_depth` (the others have a fixed depth or their own
# constraints); the depth setting is applied only where it means something.
# (FPN in smp 0.6 upsamples to the wrong size below depth 5; PSPNet defaults to 3.)
_DEPTH_ARCHS = {"unet", "unetplusplus", "manet", "linknet", "deeplabv3", "deeplabv3plus",
                "upernet", "segformer"}


def _key(name: str) -> str:
    lowered = name.strip().lower()
    lowered = _ALIASES.get(lowered, lowered)
    return lowered.replace("-", "").replace("_", "").replace("+", "plus")


def canonical_arch(name: str) -> str:
    """The smp class name for ``name`` (``"unet"`` → ``"Unet"``).

    Raises
    ------
    CalfConfigError
        Unknown name; the message lists the valid names and the closest match.
    """
    by_key = {_key(a): a for a in ARCHITECTURES}
    found = by_key.get(_key(str(name)))
    if found is None:
        close = difflib.get_close_matches(str(name), ARCHITECTURES + tuple(by_key), n=1)
        hint = f" Did you mean {by_key.get(_key(close[0]), close[0])!r}?" if close else ""
        raise CalfConfigError(
            f"Unknown architecture {name!r}.{hint} "
            f"Fix: use one of {', '.join(ARCHITECTURES)} (case does not matter)."
        )
    return found


def encoder_names() -> list[str]:
    """All encoder names smp knows (``smp.encoders.get_encoder_names()``)."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def check_encoder(name: str) -> str:
    """Return ``name`` if smp knows it, else raise with the valid names and a close match.

    timm-universal names (``tu-<timm model>``) are passed through: timm checks them.
    """
    if str(name).startswith("tu-"):
        return str(name)
    names = encoder_names()
    if name in names:
        return str(name)
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise CalfConfigError(
        f"Unknown encoder {name!r}.{hint} Fix: use one of: {', '.join(names)}."
    )


def _is_network_error(exc: BaseException) -> bool:
    """True for the ways a download fails offline (requests, urllib, huggingface_hub)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & {
            "ConnectionError",
            "URLError",
            "TimeoutError",
            "Timeout",
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "HfHubHTTPError",
            "socket.gaierror",
            "gaierror",
        }:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def build_model(
    arch: str,
    encoder: str,
    in_channels: int,
    classes: int = 1,
    encoder_weights: str | None = None,
    *,
    encoder_depth: int = 5,
) -> nn.Module:
    """Build an smp segmentation model that outputs logits.

    Parameters
    ----------
    arch : str
        Architecture, case-insensitive: ``unet``, ``unetplusplus``, ``fpn``, ``deeplabv3``,
        ``deeplabv3plus``, ``linknet``, ``pspnet``, ``manet``, ``pan`` …
    encoder : str
        smp encoder name.
    in_channels : int
        Input channels (one per MRI modality).
    classes : int
        Output channels (1 for a binary target).
    encoder_weights : str or None
        ``None`` (default: random initialisation, nothing is downloaded) or ``"imagenet"``.
    encoder_depth : int
        Encoder stages for the architectures that take it (3–5).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, in_channels, H, W)`` to logits ``(B, classes, H, W)``; H and W must be
        multiples of 32.

    Raises
    ------
    CalfConfigError
        Unknown architecture or encoder, bad channel counts, or ImageNet weights that
        cannot be downloaded (no network).
    """
    import segmentation_models_pytorch as smp

    cls_name = canonical_arch(arch)
    encoder = check_encoder(encoder)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise CalfConfigError(f"in_channels={in_channels!r} must be a positive integer.")
    if not isinstance(classes, int) or classes < 1:
        raise CalfConfigError(f"classes={classes!r} must be a positive integer.")
    kwargs: dict[str, Any] = {}
    if _key(cls_name) in _DEPTH_ARCHS and encoder_depth != 5:
        kwargs["encoder_depth"] = encoder_depth
        if _key(cls_name) in {"unet", "unetplusplus", "manet"}:
            # one decoder stage per encoder stage
            kwargs["decoder_channels"] = (256, 128, 64, 32, 16)[5 - encoder_depth:]
    try:
        model = getattr(smp, cls_name)(
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
            **kwargs,
        )
    except (KeyError, ValueError, TypeError) as exc:
        if encoder_weights is not None and _is_network_error(exc):
            raise _offline_error(encoder) from exc
        raise CalfConfigError(
            f"smp could not build {cls_name} with encoder {encoder!r}, in_channels={in_channels}, "
            f"encoder_weights={encoder_weights!r}: {exc}. Fix: pick another encoder or "
            "architecture, or leave encoder_weights unset."
        ) from exc
    except Exception as exc:
        if encoder_weights is not None and _is_network_error(exc):
            raise _offline_error(encoder) from exc
        raise
    return model


def _offline_error(encoder: str) -> CalfConfigError:
    return CalfConfigError(
        f"ImageNet weights for encoder {encoder!r} could not be downloaded: there is no "
        "network connection (or the download site is unreachable). Fix: train without "
        "pretrained weights (leave --encoder-weights unset, the default), or start from a "
        "local napari-calf checkpoint with --init RUN_DIR, or download the weights once on "
        "a machine with a connection (they are cached by huggingface_hub)."
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
