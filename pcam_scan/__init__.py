"""pcam-scan: PatchCamelyon ResNet50 metastasis heatmaps for whole-slide images.

The core package never imports ray or fastai at import time: a single slide can be scanned
in-process, and the `cluster` package only distributes the same functions.
"""

from pcam_scan.errors import PcamScanError

__all__ = ["PcamScanError", "__version__"]
__version__ = "0.1.0"
