"""``python -m napari_calf`` is the ``napari-calf`` command line."""

import sys

from ._cli.main import main

sys.exit(main())
