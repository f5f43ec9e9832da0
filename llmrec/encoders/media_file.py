"""Opening an item's media file (an image or an audio file) without trusting its path.

A catalog names its items' media files, and a path may name anything: a character device
(``/dev/zero``, ``/dev/urandom``: endless data), a FIFO (opening it for reading blocks until a writer
comes), a socket, a directory, or a regular file far larger than any poster or clip (a sparse 2 GB
file costs nothing to make). :func:`open_media` therefore ``stat``-s the path first (symbolic links
followed) and refuses anything but a regular file of at most ``max_bytes`` (config
``media_max_bytes``) before opening it; it then opens with ``O_NONBLOCK`` (so that a path swapped for
a FIFO between the ``stat`` and the ``open`` cannot block), checks the opened descriptor again with
``fstat`` (the same rules: the file read is the file checked), and clears ``O_NONBLOCK``.
:func:`sha256_of` hashes an opened file reading at most ``max_bytes`` (a file that grows while it is
read is refused rather than read without end).

Every refusal is an ``error(path, reason)`` (:class:`~llmrec.errors.ImageError` or
:class:`~llmrec.errors.AudioError`, as the caller says) naming the path and what it is, e.g.
``not a regular file (character device)`` or ``2.0 GB (2,000,000,001 bytes), over media_max_bytes
200000000``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from typing import BinaryIO

from llmrec.config import Config

DEFAULT_MAX_BYTES: int = Config.default("media_max_bytes")
_BLOCK = 1 << 20  # bytes read at a time when hashing
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symbolic link"))


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, in words: ``regular file``, ``directory``, ``character device``,
    ``block device``, ``FIFO`` (a named pipe), ``socket``, ``symbolic link`` or ``unknown file type``."""
    if stat.S_ISREG(mode):
        return "regular file"
    return next((name for test, name in _KINDS if test(mode)), "unknown file type")


def human_bytes(n: int) -> str:
    """A byte count in decimal units, one decimal: ``999 B``, ``1.5 kB``, ``12.3 GB``."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.95 or unit == "PB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def check_stat(path, st: os.stat_result, max_bytes: int, error: type, what: str) -> None:
    """Refuse what ``st`` describes unless it is a regular file of at most ``max_bytes`` bytes.

    Args:
        path: the file, named in the error. st: its ``stat`` or ``fstat``. max_bytes: >= 1.
        error: the error class, built as ``error(path, reason)``. what: ``image`` or ``audio``.
    Raises:
        error: a directory (``is a directory, not an {what} file``), anything else but a regular
            file (``not a regular file (character device)``, ...; the target named when ``path`` is
            a symbolic link), or more than ``max_bytes`` bytes.
    """
    if stat.S_ISDIR(st.st_mode):
        raise error(path, f"is a directory, not an {what} file")
    if not stat.S_ISREG(st.st_mode):
        real = os.path.realpath(path)
        via = f" {real}, through a symbolic link" if real != os.path.abspath(path) else ""
        raise error(path, f"not a regular file ({file_kind(st.st_mode)}{via}); only regular files are read")
    if st.st_size > max_bytes:
        raise error(path, f"{human_bytes(st.st_size)} ({st.st_size:,} bytes), over media_max_bytes {max_bytes}")


def _os_error(path, e: OSError, error: type):
    if isinstance(e, FileNotFoundError):
        return error(path, "no such file")
    return error(path, f"cannot read the file: {e.strerror or e}")


def open_media(path, max_bytes: int = DEFAULT_MAX_BYTES, error: type = OSError, what: str = "media") -> BinaryIO:
    """Open a media file for reading (binary, buffered), after checking what it is (module docstring).

    Nothing is opened before the ``stat``: a FIFO, a device or an oversized file is refused
    without being opened or read. The returned file is positioned at byte 0; close it (``with``).

    Args:
        path: the file (``str`` or path-like; symbolic links are followed).
        max_bytes: the largest size accepted, bytes (config ``media_max_bytes``).
        error: the error class raised, ``error(path, reason)`` (ImageError or AudioError).
        what: ``image`` or ``audio``, for the reasons.
    Returns:
        An unbuffered binary file (``io.FileIO``) reading the checked regular file: its position is
        its descriptor's, so a library reading ``f.fileno()`` (libsndfile) and ``f`` itself agree
        after a ``seek``.
    Raises:
        error: the path does not exist (``no such file``), cannot be stat-ed or opened (``cannot
            read the file: ...``), or fails :func:`check_stat` (before the open, and again on the
            opened descriptor).
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise _os_error(path, e, error) from None
    check_stat(path, st, max_bytes, error, what)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise _os_error(path, e, error) from None
    try:
        check_stat(path, os.fstat(fd), max_bytes, error, what)  # the path may have changed since the stat
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb", buffering=0)  # unbuffered: its position is the descriptor's
    except BaseException:
        os.close(fd)
        raise


def sha256_of(f: BinaryIO, path, max_bytes: int = DEFAULT_MAX_BYTES, error: type = OSError) -> str:
    """The sha256 (hex) of an opened file's bytes, from its start, reading at most ``max_bytes + 1``.

    Raises:
        error: reading fails (``cannot read the file: ...``), or the file holds more than
            ``max_bytes`` bytes (it grew after it was checked).
    """
    h, n = hashlib.sha256(), 0
    try:
        f.seek(0)
        while block := f.read(min(_BLOCK, max_bytes + 1 - n)):
            n += len(block)
            if n > max_bytes:
                raise error(path, f"grew past media_max_bytes {max_bytes} while being read")
            h.update(block)
    except OSError as e:
        raise _os_error(path, e, error) from None
    return h.hexdigest()
