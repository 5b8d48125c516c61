"""Loaded by every Python process of a gated test run (tests/_support/gate.py), inert without its variables:
- LANDSCAPE_SWEEP_TEST_GATE: wraps `EpochCheckpoints.on_train_epoch_end` when `landscape_sweep.training.callbacks`
  is imported, to stop the process (SIGSTOP) after the chosen epoch of the chosen training;
- LANDSCAPE_SWEEP_TEST_NOW: the clock of `landscape_sweep.pipeline.config` (default run/sweep dir names) stands
  still at that ISO time."""

import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import signal
import sys
from datetime import datetime
from fnmatch import fnmatch


def _gate(module):
    gate, cls = json.loads(os.environ["LANDSCAPE_SWEEP_TEST_GATE"]), module.EpochCheckpoints
    original = cls.on_train_epoch_end

    def on_train_epoch_end(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch + 1 != gate["epoch"] or not fnmatch(str(self.dirpath), gate["match"]):
            return
        marker = os.path.join(gate["dir"], "stopped-" + hashlib.sha1(str(self.dirpath).encode()).hexdigest()[:16])
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # the gate stops a training once: a resumed or requeued run goes on
            return
        os.write(fd, json.dumps({"pid": os.getpid(), "dir": str(self.dirpath)}).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGSTOP)

    cls.on_train_epoch_end = on_train_epoch_end


def _clock(module):
    module.datetime = frozen(datetime.fromisoformat(os.environ["LANDSCAPE_SWEEP_TEST_NOW"]))


def frozen(when: datetime) -> type:
    """A `datetime` whose now() is always `when`."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return when

    return Frozen


PATCHES = {
    "landscape_sweep.training.callbacks": ("LANDSCAPE_SWEEP_TEST_GATE", _gate),
    "landscape_sweep.pipeline.config": ("LANDSCAPE_SWEEP_TEST_NOW", _clock),
}


class _Finder(importlib.abc.MetaPathFinder):
    """Patch a module right after it is executed."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path, target=None):
        if name not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module, patch = spec.loader.exec_module, self.patches[name]

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


_active = {name: patch for name, (env, patch) in PATCHES.items() if os.environ.get(env)}
if _active:
    sys.meta_path.insert(0, _Finder(_active))
