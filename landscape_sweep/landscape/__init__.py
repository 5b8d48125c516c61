"""Pure PyTorch loss-landscape math over (nn.Module, data). No Lightning, Hydra or W&B here.

`data` is a DataLoader, an iterable of `(x, y)` batches, or one `(x, y)` pair; every function leaves
the caller's model unchanged (parameters, buffers, grads, train/eval mode).
"""

from ._core import evaluate, exclude_norm_and_bias

__all__ = ["evaluate", "exclude_norm_and_bias"]
