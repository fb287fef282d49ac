"""Build the anatomy asset behind the phantom from the MNI ICBM152 2009a template.

Run once by a developer, not at run time; the result is committed as package data
(``src/napari_calf/assets/mni152_2009a_2mm.nii.gz``) with the template's copyright
notice beside it. Input: the three files the nilearn wheel carries under
``nilearn/datasets/data/`` (T1, grey-matter and white-matter probability maps)::

    pip download --no-deps nilearn -d /tmp/nl && cd /tmp/nl && unzip -q nilearn-*.whl
    python tools/make_template_asset.py /tmp/nl/nilearn/datasets/data

Output: one 4D uint8 volume (x, y, z, 3) at 2 mm, RAS, cropped to the brain with a
margin; channels are T1 intensity, GM and WM probability (0-255).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

NAMES = ("t1", "gm", "wm")
FACTOR = 2  # 1 mm -> 2 mm by block averaging
MARGIN_MM = 8


def main(src: Path, out: Path) -> None:
    vols = []
    affine = None
    for name in NAMES:
        img = nib.load(src / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")
        affine = img.affine
        vols.append(np.asarray(img.dataobj, dtype=np.float32))
    brain = vols[0] > 0
    idx = np.argwhere(brain)
    lo = np.maximum(idx.min(0) - MARGIN_MM, 0)
    hi = np.minimum(idx.max(0) + 1 + MARGIN_MM, brain.shape)
    # make extents a multiple of FACTOR
    hi = lo + ((hi - lo) // FACTOR) * FACTOR
    out_channels = []
    for v in vols:
        c = v[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        s = c.shape
        c = c.reshape(s[0] // FACTOR, FACTOR, s[1] // FACTOR, FACTOR, s[2] // FACTOR, FACTOR).mean((1, 3, 5))
        out_channels.append(np.clip(np.rint(c), 0, 255).astype(np.uint8))
    data = np.stack(out_channels, axis=-1)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * FACTOR
    # centre of the first 2 mm block
    new_affine[:3, 3] = affine[:3, :3] @ (lo + (FACTOR - 1) / 2) + affine[:3, 3]
    img = nib.Nifti1Image(data, new_affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"MNI ICBM152 2009a sym, 2mm, t1/gm/wm"
    nib.save(img, out)
    print(out, data.shape, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else
         Path(__file__).resolve().parents[1] / "src/napari_calf/assets/mni152_2009a_2mm.nii.gz")
