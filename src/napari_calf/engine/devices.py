"""Choosing the compute device, and the per-device speed settings.

``"auto"`` picks CUDA, then Apple's MPS, then the CPU, and says why. On CUDA, TF32
matmuls and cuDNN autotuning are switched on (bf16 autocast and channels-last are
applied by the trainer / predictor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CalfConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def select_device(name: str = "auto") -> tuple[torch.device, str]:
    """Resolve ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` to a device and a reason.

    Raises
    ------
    CalfConfigError
        A device was named that this machine does not have.
    """
    import torch

    name = str(name or "auto").lower()
    has_cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if name == "auto":
        if has_cuda:
            dev = torch.device("cuda", torch.cuda.current_device())
            return dev, f"auto: CUDA GPU found ({torch.cuda.get_device_name(dev)})"
        if has_mps:
            return torch.device("mps"), "auto: no CUDA GPU; Apple MPS found"
        return torch.device("cpu"), "auto: no CUDA or MPS GPU found, using the CPU"
    if name.startswith("cuda"):
        if not has_cuda:
            raise CalfConfigError(
                f"device {name!r} asked for, but torch sees no CUDA GPU "
                f"(torch {torch.__version__}). Fix: use --device auto or cpu, or install a "
                "CUDA build of torch that matches the driver."
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CalfConfigError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA GPU(s). "
                "Fix: use cuda or cuda:0."
            )
        return dev, f"asked for {name}"
    if name == "mps":
        if not has_mps:
            raise CalfConfigError("device 'mps' asked for, but MPS is not available. Fix: use auto or cpu.")
        return torch.device("mps"), "asked for mps"
    if name == "cpu":
        return torch.device("cpu"), "asked for the CPU"
    raise CalfConfigError(f"Unknown device {name!r}. Fix: use auto, cpu, cuda or mps.")


def configure_for_speed(device: torch.device) -> list[str]:
    """Switch on the fast paths for ``device``; return a note per setting changed."""
    import torch

    notes: list[str] = []
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        notes.append("CUDA: TF32 and cuDNN autotuning on")
    return notes
