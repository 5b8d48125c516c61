"""Many cells per submitted job (`hydra.launcher.cells_per_job`): one process runs a chunk of the sweep's cells.

Why: a small cell pays an interpreter start, the imports (~5 s) and a scheduler slot; a job that runs several cells
one after another pays them once (hydra issue 2786).

Job side: `PackedCells` is the callable submitit runs. It hands each cell of its chunk to the plugin's own job side
(`BaseSubmititLauncher.__call__`: Hydra's state restored, the cell's sweep config, then Hydra's `run_job` with the
cell's job dir, `.hydra/` files, HydraConfig, job callbacks and job logging), so every cell is the same Hydra job
as with one cell per job. A cell that raises outside its task function becomes a failed `JobReturn` and the next
cell runs. Each cell's `JobReturn` is saved in the job's submitit folder as soon as the cell ends: a requeued job
(time limit via `checkpoint`, preemption, `scontrol requeue`) takes the saved ones without running those cells
again and runs the others, the interrupted cell resuming each endpoint from its `last.ckpt`. The submitting side
reads the saved returns too when a job dies, so the cells it finished are not reported as lost.

The module's name starts with `_`, so Hydra's plugin scan does not re-execute it and its classes keep one identity.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException

from landscape_sweep.checks import check_cells_per_job

T = TypeVar("T")


class LauncherConfigError(CompactHydraException, ValueError):
    """A bad launcher value: one line, `key=value: what is allowed` (Hydra prints it without a traceback)."""


def cells_per_job(params: Mapping[str, Any]) -> int:
    """The launcher's `cells_per_job` (1 when absent): an integer >= 1, else `LauncherConfigError` in one line."""
    try:
        return check_cells_per_job(params)
    except ValueError as e:
        raise LauncherConfigError(str(e)) from None


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` in consecutive chunks of `size` (the last one shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def return_path(folder: Path, job_id: str, num: int) -> Path:
    """Where job `job_id` saves the `JobReturn` of cell `num` (its submitit folder; the id keeps re-runs apart)."""
    return Path(folder) / f"{job_id}_cell{num}_return.pkl"


def save_return(ret: JobReturn, path: Path) -> None:
    """Pickle a cell's `JobReturn` atomically; one that cannot be pickled is left unsaved (the cell re-runs)."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(ret)
    except Exception as e:
        print(f"cell return not saved ({type(e).__name__}: {e}): a requeue re-runs the cell", file=sys.stderr)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_return(path: Path) -> JobReturn | None:
    """A saved `JobReturn`, None when there is none (or it cannot be read)."""
    try:
        with open(path, "rb") as f:
            ret = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return ret if isinstance(ret, JobReturn) else None


# the task's hook that writes every running training's unwritten last.ckpt (called only when the job imported it)
SAVE_PENDING = ("landscape_sweep.training.callbacks", "save_pending")


def before_requeue() -> None:
    """Before submitit requeues the job (time limit, preemption): let the running training write its `last.ckpt`.

    landscape_sweep keeps the last finished epoch in memory between `trainer.checkpoint_every_s` writes; its
    `save_pending` writes it, so the requeued cell loses no finished epoch. Called from the submitit signal handler,
    so a failure is printed, never raised: the requeue goes on.
    """
    module = sys.modules.get(SAVE_PENDING[0])
    if module is None:
        return
    try:
        getattr(module, SAVE_PENDING[1])()
    except Exception as e:
        print(f"before requeue: {SAVE_PENDING[0]}.{SAVE_PENDING[1]}() failed: {type(e).__name__}: {e}", file=sys.stderr)


def run_cell_job(launcher: Any, args: Sequence[Any]) -> JobReturn:
    """One cell through the plugin's job side; an exception outside the task function becomes a failed return."""
    try:
        return launcher(*args)
    except Exception as e:  # interrupts (KeyboardInterrupt, SystemExit) end the job as they would a single cell
        traceback.print_exc()
        return JobReturn(overrides=list(args[0]), status=JobStatus.FAILED, _return_value=e)


class PackedCells:
    """The job-side callable of a packed job: runs its cells one after another in this process, in order.

    `cells` are the plugin's job arguments of each cell (`_private.job_args`); the result is one `JobReturn` per
    cell, in the same order. `checkpoint` lets submitit requeue it (time limit, preemption) with the same cells.
    """

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __call__(self, cells: Sequence[Sequence[Any]]) -> list[JobReturn]:
        import submitit

        env = submitit.JobEnvironment()
        folder, job_id = env.paths.folder, str(env.job_id)
        returns = []
        for args in cells:
            path = return_path(folder, job_id, args[2])
            ret = load_return(path)
            if ret is None:
                ret = run_cell_job(self.launcher, args)
                save_return(ret, path)
            else:
                print(f"cell #{args[2]} ended before this job was requeued: not run again", flush=True)
            returns.append(ret)
        return returns

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same cells: those that ended are taken from their saved returns, the others run."""
        import submitit

        before_requeue()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
