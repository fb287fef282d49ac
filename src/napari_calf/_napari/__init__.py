"""napari front end: the only part of napari-calf that imports napari, Qt or magicgui."""
