"""Pure PyTorch loss-landscape math over (nn.Module, data). No Lightning, Hydra or W&B here.

`data` is a DataLoader, an iterable of `(x, y)` batches, or one `(x, y)` pair; every function leaves
the caller's model unchanged (parameters, buffers, grads, train/eval mode).
"""

from ._core import evaluate, exclude_norm_and_bias, num_samples, preserved
from .alignment import align, apply_permutation
from .blocks import block_curvature, block_hessian
from .curves import Curve, fit_curve
from .hessian import hessian_eigenvalues, hessian_spectrum, hessian_trace, spectral_density
from .hvp import HessianOperator, hvp
from .interpolation import interpolate, recompute_bn
from .paths import evaluate_path, linear_path
from .repair import RepairedPath
from .sharpness import sharpness
from .surface import loss_surface, plane_surface

__all__ = ["evaluate", "exclude_norm_and_bias", "num_samples", "preserved"]
__all__ += ["hessian_eigenvalues", "hessian_trace", "hessian_spectrum", "spectral_density", "sharpness"]
__all__ += ["HessianOperator", "hvp", "block_curvature", "block_hessian"]
__all__ += ["align", "apply_permutation", "Curve", "fit_curve", "interpolate", "recompute_bn"]
__all__ += ["evaluate_path", "linear_path", "RepairedPath", "loss_surface", "plane_surface"]
