"""napari-calf: CALF, a conditionally adaptive loss for class-imbalanced segmentation.

Importing the package is instant on purpose: it holds the version only. The core
lives in submodules (``napari_calf.io.volumes``, ``.stats``, ``.losses`` …) that import
torch and friends lazily, and napari/Qt code lives in ``napari_calf._napari``.
"""

__version__ = "0.1.0"
