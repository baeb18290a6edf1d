"""Atomic file writes: write beside the target, then rename, so a crash never leaves a half-written file.

The temporary file is `.<name>.<writer pid>.<random>.tmp` in the target's folder. A writer killed mid-write
(SIGKILL, power loss) cannot remove it, so each new atomic write of the same target first removes that
target's stale temporary files: those whose writer process is gone, and any older than `STALE_TMP_SECONDS`
(a pid may be reused, and files from other machines on a shared disk carry foreign pids).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Union

STALE_TMP_SECONDS = 6 * 3600.0


def default_file_mode() -> int:
    """0o666 less the process umask: what a plain open() would have created (mkstemp uses 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def remove_stale_temp_files(path: Union[str, Path], max_age_s: float = STALE_TMP_SECONDS) -> List[Path]:
    """Remove the leftover temporary files of interrupted atomic writes of `path`; returns what was removed.

    A temp file is stale when the pid in its name is not a live process, when its name carries no pid (the
    older `.<name>.<random>.tmp` form) and it is older than a minute, or when it is older than `max_age_s`.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return []
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp$")
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = match.group(1)
        if pid is not None:
            stale = not _pid_alive(int(pid)) or age > max_age_s
        else:
            stale = age > min(60.0, max_age_s)
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_folder(path: Union[str, Path], keep_existing: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; on success it replaces `path` (renamed in, the old folder removed
    after), so readers see the old folder or the complete new one, never a partial one. `keep_existing()` is asked
    after the body: True (a concurrent writer already put an up-to-date folder there) drops the new one instead.
    On an error nothing is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if keep_existing():
            return
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
