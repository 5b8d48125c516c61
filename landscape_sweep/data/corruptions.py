"""Procedural image corruptions for out-of-distribution test sets, in the spirit of CIFAR-10-C.

`corrupt(x, kind, severity, seed)` corrupts a batch of images `x` (N, C, H, W) in [0, 1] in memory, in pure torch,
seeded, and returns a new tensor in [0, 1]. The severity parameters are those Hendrycks & Dietterich (2019) used
for CIFAR-10-C (32x32 images), applied as they are to every image size (a blur sigma is in pixels):

| corruption | what it does | severity 1, 2, 3, 4, 5 |
|---|---|---|
| `gaussian_noise` | `x + N(0, c²)` per pixel and channel | c = 0.04, 0.06, 0.08, 0.09, 0.10 |
| `shot_noise` | `Poisson(c·x) / c` (photon noise) | c = 500, 250, 100, 75, 50 |
| `impulse_noise` | a fraction c of the values set to 0 or 1 (salt and pepper) | c = 0.01, 0.02, 0.03, 0.05, 0.07 |
| `gaussian_blur` | Gaussian filter of std c pixels (truncated at 4c, edges replicated) | c = 0.4, 0.6, 0.7, 0.8, 1.0 |
| `contrast` | `(x − m)·c + m`, m the image's mean per channel | c = 0.75, 0.5, 0.4, 0.3, 0.15 |
| `brightness` | HSV value `V + c` (clipped at 1), hue and saturation kept | c = 0.05, 0.1, 0.15, 0.2, 0.3 |
| `pixelate` | box-downsampled to `int(c·side)` pixels, blown up back in blocks | c = 0.95, 0.9, 0.85, 0.75, 0.65 |

Every result is clipped to [0, 1]. The random ones draw from one CPU generator seeded by `seed`, so a set is a pure
function of (images, kind, severity, seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_choice, check_int
from .core import generator

SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITIES)


def _gaussian_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    return x + c * torch.randn(x.shape, generator=gen, dtype=x.dtype)


def _shot_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    return torch.poisson(x * c, generator=gen) / c


def _impulse_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    hit = torch.rand(x.shape, generator=gen) < c
    salt = torch.rand(x.shape, generator=gen) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _gaussian_blur(x: Tensor, sigma: float, gen: torch.Generator) -> Tensor:
    radius = math.ceil(4 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)  # along width
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)  # along height


def _contrast(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


def _brightness(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    # with hue and saturation fixed every channel is proportional to V = max over channels; V = 0 (black) has
    # saturation 0, so it becomes grey at the new value
    value = x.amax(dim=1, keepdim=True)
    new = (value + c).clamp(max=1.0)
    return torch.where(value > 0, x * new / value.clamp_min(1e-12), new.expand_as(x))


def _pixelate(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


_APPLY: dict[str, Callable[[Tensor, float, torch.Generator], Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "pixelate": _pixelate,
}


def corrupt(x: Tensor, kind: str, severity: int, seed: int = 0) -> Tensor:
    """Images `x` (N, C, H, W, values in [0, 1]) with corruption `kind` at `severity` 1-5 (module table)."""
    check_choice("corruption", kind, CORRUPTIONS)
    severity = check_int("severity", severity, 1, 5)
    if x.ndim != 4:
        raise ValueError(f"x.shape={tuple(x.shape)}: must be (N, C, H, W) images")
    gen = generator(check_int("seed", seed, 0), "corrupt")  # a CPU generator: the work is done on the CPU
    out = _APPLY[kind](x.detach().float().cpu(), SEVERITIES[kind][severity - 1], gen)
    return out.clamp(0.0, 1.0).to(x.device)
