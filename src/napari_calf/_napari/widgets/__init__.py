"""napari-calf dock widgets: one module per widget (analysis, training, review).

Importing this package arms the Mesa/triton guard
(:mod:`napari_calf._napari._gl_safety`): napari imports a widget module only when
the user opens the widget, typically after the canvas exists, and every widget
that may create a torch optimizer lives below this package. The guard is cheap
(it does not import torch).
"""

from __future__ import annotations

from .._gl_safety import ensure_torch_safe_with_gl

ensure_torch_safe_with_gl()
