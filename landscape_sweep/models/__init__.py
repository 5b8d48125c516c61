"""Model families (mlp, cnn, resnet, wide_resnet) selected by `model.arch/depth/width/norm/activation`.

Every model maps `(N, *in_shape)` to `(N, num_classes)` logits and has `permutation_spec()` giving,
for each group of jointly permutable hidden units/channels, the `(state_dict key, axis)` pairs it acts on.
"""

from ._layers import ACTIVATIONS, NORMS, Classifier
from .cnn import CNN
from .mlp import MLP
from .registry import ARCHS, MODELS, build_model, num_params, validate_model_args
from .resnet import ResNet
from .wide_resnet import WideResNet

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "CNN",
    "MLP",
    "MODELS",
    "NORMS",
    "Classifier",
    "ResNet",
    "WideResNet",
    "build_model",
    "num_params",
    "validate_model_args",
]
