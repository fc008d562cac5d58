"""The one place `training/` imports fastai from.

fastai's import pulls in pandas and calls `torch.jit.script`, both of which emit deprecation
warnings that are theirs, not ours (and errors under `-W error`); they are silenced for the
import only, never while training.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    import fastai
    import fastai.callback.schedule  # noqa: F401  (patches Learner with fit_one_cycle, lr_find)
    from fastai.callback.channelslast import ChannelsLast
    from fastai.callback.fp16 import AMPMode, MixedPrecision
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import TensorCategory, TensorImage, apply_init, set_seed
    from fastai.vision.augment import RandomResizedCropGPU
    from fasttransform import Transform

FASTAI_VERSION: str = fastai.__version__

__all__ = [
    "AMPMode",
    "ChannelsLast",
    "CrossEntropyLossFlat",
    "DataLoaders",
    "FASTAI_VERSION",
    "IntToFloatTensor",
    "Learner",
    "MixedPrecision",
    "Normalize",
    "RandomResizedCropGPU",
    "TensorCategory",
    "TensorImage",
    "TfmdDL",
    "Transform",
    "accuracy",
    "apply_init",
    "set_seed",
]
