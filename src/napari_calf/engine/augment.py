"""Batch augmentation on the training device (torch ops on whole batches, seeded).

Per sample, independently:

- flips along each in-plane axis and, for square slices, a transpose: together these
  give all eight 90°-rotations/reflections (the dihedral group). Non-square slices
  (e.g. the phantom's 96×128) cannot rotate by 90° inside one batch tensor, so they get
  the four flips, which include the 180° rotation;
- intensity jitter inside the brain (non-zero voxels), per channel: x·(1 + a) + b with
  a ∈ [-scale, scale], b ∈ [-shift, shift]. Background stays 0.

Images and targets get the same geometric transform. Randomness comes only from the
``torch.Generator`` passed in, so a seed reproduces the sequence and resume restores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class AugmentSettings:
    """What :func:`augment_batch` does; recorded in the run card."""

    flips: bool = True
    rotations: bool = True
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1


def augment_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    settings: AugmentSettings = AugmentSettings(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly flip/rotate and intensity-jitter a batch.

    Parameters
    ----------
    images : Tensor, shape (B, C, H, W), float
    targets : Tensor, shape (B, 1, H, W)
    generator : torch.Generator
        On the same device as the tensors.
    settings : AugmentSettings

    Returns
    -------
    (images, targets)
        New tensors, same shapes and dtypes.
    """
    import torch

    b = images.shape[0]
    dev = images.device

    def coin() -> torch.Tensor:
        return (torch.rand(b, generator=generator, device=dev) < 0.5).view(b, 1, 1, 1)

    if settings.flips or settings.rotations:
        for dim in (-2, -1):
            m = coin()
            images = torch.where(m, images.flip(dim), images)
            targets = torch.where(m, targets.flip(dim), targets)
        if settings.rotations and images.shape[-1] == images.shape[-2]:
            # flip + transpose = 90° rotation; with the flips above, all 8 symmetries
            m = coin()
            images = torch.where(m, images.transpose(-1, -2), images)
            targets = torch.where(m, targets.transpose(-1, -2), targets)
    if settings.intensity_scale or settings.intensity_shift:
        c = images.shape[1]
        u = torch.rand((2, b, c, 1, 1), generator=generator, device=dev) * 2 - 1
        gain = 1 + settings.intensity_scale * u[0]
        offset = settings.intensity_shift * u[1]
        brain = images != 0
        images = torch.where(brain, images * gain.to(images.dtype) + offset.to(images.dtype), images)
    return images.contiguous(), targets.contiguous()
