"""Output files: a regular file is written to a temporary name beside it, flushed to disk and renamed over it
(atomic replace); any other kind of target is written in place or refused.

What :func:`atomic_path` does per target, and why:

- a regular file, or no file yet: atomic replace. A reader never sees a half-written file, and a write that
  fails or is interrupted leaves the old file (or nothing) under the name.
- a symbolic link: followed, link by link; the file it ends at is the target (a dangling link creates its
  target), so the link stays a link. A link through ``/proc`` (``/dev/stdout``, ``/dev/fd/N``,
  ``/proc/self/fd/N``) names an open file rather than a path: it is written in place, through the link.
- a character device (``/dev/null``, a terminal) or a FIFO: written in place. Renaming over one would replace
  the node with a regular file (as root) and leave a FIFO's reader waiting forever; such a target has no old
  contents that a rename could protect. A write error of the device (``/dev/full``) is raised as is.
- a block device: refused. A disk or partition is never where a model or array file belongs, and writing in
  place would overwrite a file system.
- a directory or a socket: refused (neither can be written as a file).

Temporary files are named ``.NAME.pidPID.XXXXXXXX.tmp``. A writer killed before the rename (SIGKILL, power
loss) leaves its temporary file behind; the next write to the same target removes the ones that are stale:
last modified at least :data:`STALE_AFTER` seconds ago AND not written by a process still running on this
machine (files from versions that did not record the PID: the age alone). Both conditions are required so
that two concurrent writers never remove each other's file: a live writer on this machine is recognised by
its PID, and one on another machine sharing the folder (whose PID means nothing here) keeps touching its
file while it writes.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator, Tuple, Union

STALE_AFTER = 300.0  # seconds without a change before a dead writer's temporary file is removed
_MAX_LINKS = 40  # as Linux's limit on symbolic links followed in one lookup


class OutputPathError(OSError):
    """An output path that cannot be written as a file (a directory, a block device, a socket)."""


def _resolve(path: Path) -> Tuple[Path, bool]:
    """Follow ``path``'s symbolic links one at a time: (where they end, whether one of them was in /proc)."""
    p = Path(os.getcwd()) / path  # not abspath: '..' after a symlinked folder must follow the link
    for _ in range(_MAX_LINKS):
        p = Path(os.path.realpath(p)) if p.name in ("", "..") else Path(os.path.realpath(p.parent)) / p.name
        if not p.is_symlink():
            return p, False
        if p.parts[1:2] == ("proc",):
            return p, True
        p = p.parent / os.readlink(p)
    raise OSError(errno.ELOOP, "too many levels of symbolic links", str(path))


def _refuse(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"{path}: is a directory; give the path of a file to write")
    if stat.S_ISBLK(mode):
        raise OutputPathError(f"{path}: is a block device (a disk or partition); refusing to write a file onto it")
    raise OutputPathError(f"{path}: is not a regular file, character device or FIFO "
                          f"({stat.filemode(mode)[0]!r} in ls -l); refusing to write to it")


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process on this machine (any owner)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # not a process id at all
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the stale temporary files of earlier writes to ``target`` (see the module docstring)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:pid(\d+)\.)?[a-z0-9_]+\.tmp")
    now = time.time()
    with os.scandir(target.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # another writer renamed or removed it
                continue
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_AFTER:
                continue
            if match.group(1) is not None and _running(int(match.group(1))):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _fsync_path(path: Union[str, Path]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # a folder on a file system that cannot sync folders: the rename is still atomic
        if not (stat.S_ISDIR(os.fstat(fd).st_mode) and e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EBADF)):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield the path a writer writes ``path``'s new contents to; what happens depends on what ``path`` is.

    A regular file (or a new one): a temporary path beside it, which on success is flushed to disk (fsync)
    and renamed over the target, and on failure removed. A symbolic link is followed first. A character
    device, a FIFO, or a link through /proc (``/dev/stdout``): the target itself, written in place. A
    directory, block device or socket: :class:`OutputPathError` before anything is written. The module
    docstring says why for each kind, and which leftover temporary files each write removes.
    """
    path = Path(path)
    target, via_proc = _resolve(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if via_proc:
        yield path
        return
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        yield target
        return
    if mode is not None and not stat.S_ISREG(mode):
        _refuse(path, mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.pid{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp (and writers that recreate the file) leave 0600
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_path(target.parent)
