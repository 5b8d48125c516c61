"""What a cell process pays once, cut to what a cell needs: deferred package imports and the collector's sweeps.

- `DeferInit(name)`: import a package without running its `__init__`; `import pkg.sub` imports a submodule as
  usual, and the `__init__` runs the first time anything else is asked of the package (`pkg.X`, also
  `from pkg import X`), so code that uses it keeps working.
  - `defer_torchmetrics()`: pytorch_lightning needs only two classes of torchmetrics (`Metric`,
    `MetricCollection`, for isinstance checks on logged values) and its version, but torchmetrics' `__init__`
    imports every metric and with them scipy.signal, torchvision and the audio/image/text helpers: 645 of the 3804
    modules a cell's imports load, 0.76 s of their 3.9 s (medians of 5 fresh interpreters on 2 busy CPU cores).
    Installed on `import landscape_sweep.pipeline`, which imports nothing for it: it acts when Lightning imports
    torchmetrics.
  - `defer_wandb_launch()` (tracking.py, before a run starts): `wandb.init` imports `wandb.sdk.launch` for one
    class that applies W&B Launch inputs (none in a sweep), and its `__init__` imports the launch agent and W&B's
    public API models: ~0.45 s.
- `pause_gc()` / `freeze_heap()`: the imports build ~0.4 M objects (modules, classes, functions) that never become
  garbage, and while they are built the collector runs full collections over all of them, ever longer: 8 in the
  CLI's start, 1.0 s in all (`gc.callbacks`). The CLI pauses the collector until its imports are done, then
  collects once (0.3-0.5 s) and moves what is alive out of the collector's view (`gc.freeze`), so the cells'
  collections walk only their own objects; a worker process (joblib, submitit) does the same at its first cell
  (without the pause: its imports come with its first job). At exit, `before_exit()` spares the interpreter's
  final collections over the whole heap (1.3-2.9 s -> 0.2-0.35 s after `import pytorch_lightning`, on 2 busy
  cores).
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_frozen = {"done": False}


class DeferInit(importlib.abc.MetaPathFinder):
    """Imports package `name` without running its `__init__` (module docstring): its submodules import as usual,
    `fill(module)` imports what must be there at once, and the `__init__` runs the first time any other attribute
    is asked of the package. When `fill` fails (another layout of the package) the `__init__` runs at once, as an
    ordinary import would have. Acts on the package's next import only; `install` puts it first in `sys.meta_path`."""

    def __init__(self, name: str, fill: Callable[[ModuleType], None] | None = None) -> None:
        self.name, self.fill = name, fill

    def install(self) -> bool:
        """Defer the package's next import; False when it is imported already or a finder for it is installed."""
        if self.name in sys.modules or any(getattr(f, "name", None) == self.name for f in sys.meta_path):
            return False
        sys.meta_path.insert(0, self)
        return True

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once: the real spec, and every later import, from the other finders
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            return spec
        spec.loader = _DeferredLoader(spec.loader, self.fill)
        return spec


class _DeferredLoader(importlib.abc.Loader):
    """The package's own loader, with `exec_module` (its `__init__`) deferred to the first attribute access."""

    def __init__(self, loader: Any, fill: Callable[[ModuleType], None] | None) -> None:
        self.loader, self.fill = loader, fill

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # type: ignore[union-attr]
        try:
            if self.fill is not None:
                self.fill(module)
        except Exception:
            self.loader.exec_module(module)  # the ordinary import
            return
        module.__getattr__ = _full_import(module, self.loader)  # type: ignore[attr-defined]


def _full_import(module: ModuleType, loader: Any) -> Callable[[str], Any]:
    """The deferred package's module `__getattr__`: run its real `__init__` once, then answer from it."""
    lock = threading.Lock()

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):  # probes (copy, pickle, inspect): no package name
            raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}")
        with lock:
            if module.__dict__.get("__getattr__") is __getattr__:
                del module.__getattr__
                try:
                    loader.exec_module(module)
                except BaseException:
                    module.__getattr__ = __getattr__  # the next access fails the same way
                    raise
        return getattr(module, attr)

    return __getattr__


def is_deferred(name: str) -> bool:
    """Whether package `name` is imported without its `__init__` having run (`DeferInit`)."""
    module = sys.modules.get(name)
    return module is not None and "__getattr__" in module.__dict__


def _torchmetrics_for_lightning(module: ModuleType) -> None:
    """What Lightning imports from torchmetrics (`Metric`, `MetricCollection`, `__version__`) and the names the
    package's own modules import from it before its `__init__` would have finished."""
    module._logger = logging.getLogger(module.__name__)  # type: ignore[attr-defined]
    module._PACKAGE_ROOT = os.path.dirname(module.__file__ or "")  # type: ignore[attr-defined]
    module._PROJECT_ROOT = os.path.dirname(module._PACKAGE_ROOT)  # type: ignore[attr-defined]
    import torchmetrics.utilities  # noqa: F401  (first, as the package does: it and .metric import each other)
    from torchmetrics.__about__ import __version__
    from torchmetrics.collections import MetricCollection
    from torchmetrics.metric import Metric

    module.__version__ = __version__  # type: ignore[attr-defined]
    module.Metric = Metric  # type: ignore[attr-defined]
    module.MetricCollection = MetricCollection  # type: ignore[attr-defined]


def defer_torchmetrics() -> bool:
    """torchmetrics' next import brings only what Lightning imports from it, the rest on first use."""
    return DeferInit("torchmetrics", _torchmetrics_for_lightning).install()


def defer_wandb_launch() -> bool:
    """`wandb.sdk.launch`'s next import skips its `__init__` (the launch agent, W&B's public API models)."""
    return DeferInit("wandb.sdk.launch").install()


def pause_gc() -> None:
    """No automatic collections until `freeze_heap()` (the CLI's start: what its imports build is never garbage)."""
    if not _frozen["done"]:
        gc.disable()


def freeze_heap() -> None:
    """Once per process, when its imports are done: collect, move every object alive into the collector's
    permanent generation, and collect automatically again (later calls do nothing, so whatever a cell leaves
    behind is collected as usual)."""
    if not _frozen["done"]:
        _frozen["done"] = True
        gc.collect()  # garbage of what came before (e.g. configs composed by the precheck) is not kept forever
        gc.freeze()
        gc.enable()


def before_exit() -> None:
    """The process ends (the CLI's last step): spare the interpreter's final collections over the whole heap;
    atexit handlers, stream flushing and module teardown still run as usual."""
    gc.freeze()
