"""Files written safely: atomically (temp file beside the target, fsync, rename) and with the user's umask.

One owner for how the package writes a file: results, reports, figures, checkpoints and data caches all go through
`atomic_open`, so a killed job never leaves a half-written file, concurrent writers never share a temp name, and
a teammate can read a shared sweep (mkstemp's 0600 is replaced by the mode `open()` would give). Files read back
from a sweep dir (results.json, overrides, locks, sweep.json) go through `read_regular_text`: a FIFO or device
planted there would block a reader forever or never end.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status; elsewhere set-and-restore once)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _umask_once()


@functools.cache
def _umask_once() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def new_file_mode() -> int:
    """The mode `open()` gives a new file (0o666 & ~umask): mkstemp's 0600 would hide a shared sweep's files."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """A file object whose content replaces `path` atomically once the block ends without error.

    Written through a uniquely named temp file in the same directory (concurrent writers never share one, the
    rename never crosses file systems), flushed to disk, given a normal new file's mode (`new_file_mode`), then
    renamed over `path`; the temp file is removed when the block fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def read_regular_text(path: str | Path) -> str:
    """The UTF-8 text of `path` when it is a regular file (a link to one is followed); OSError otherwise (absent:
    FileNotFoundError). Opened non-blocking, so a FIFO raises instead of waiting for a writer that never comes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return f.read().decode("utf-8")


def dir_problem(path: str | Path) -> str | None:
    """Why `path` is not a directory one can read (`not a directory`, `File name too long`, ...), None when it is
    one. Unlike `Path.is_dir`, never raises (ENAMETOOLONG, EACCES)."""
    try:
        st = os.stat(path)
    except OSError as e:
        return e.strerror or str(e)
    return None if stat.S_ISDIR(st.st_mode) else "not a directory"


def write_problem(directory: str | Path) -> str | None:
    """Why no file can be created in `directory` (creating it when absent), None when one can: a real probe (a temp
    file created and removed), since permission bits say nothing for root or on a read-only mount."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".landscape_sweep-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return e.strerror or str(e)
    return None
