"""Loaded by every Python process of a gated test run (tests/_support/gate.py): wraps
`EpochCheckpoints.on_train_epoch_end` when `landscape_sweep.training.callbacks` is imported, to stop the process
(SIGSTOP) after the chosen epoch of the chosen training. Inert without LANDSCAPE_SWEEP_TEST_GATE."""

import importlib.abc
import importlib.machinery
import json
import os
import signal
import sys
from fnmatch import fnmatch

_GATE = os.environ.get("LANDSCAPE_SWEEP_TEST_GATE")
_MODULE = "landscape_sweep.training.callbacks"


def _patch(cls, gate):
    original = cls.on_train_epoch_end

    def on_train_epoch_end(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch + 1 != gate["epoch"] or not fnmatch(str(self.dirpath), gate["match"]):
            return
        try:
            fd = os.open(os.path.join(gate["dir"], "stopped"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # the gate stops one run once: a resumed or requeued run goes on
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGSTOP)

    cls.on_train_epoch_end = on_train_epoch_end


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module.EpochCheckpoints, json.loads(_GATE))

        spec.loader.exec_module = exec_and_patch
        return spec


if _GATE:
    sys.meta_path.insert(0, _Finder())
