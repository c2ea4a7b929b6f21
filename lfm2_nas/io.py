"""Result files, written so that a crash or a concurrent reader never sees half of one.

* :func:`atomic_write_text` / :func:`atomic_write_bytes` / :func:`atomic_write`: write a whole file
  to a temporary name in the same folder, flush and fsync it, then ``os.replace`` it into place. A
  reader sees the old file or the new one; a write that fails (or is killed) leaves the old file as
  it was. The new file gets the mode a plain ``open(path, "w")`` would give it: the old file's mode
  when it replaces one, else ``0o666`` less the umask (``tempfile.mkstemp`` alone would leave 0600).
* :class:`LineStore`: an append-only JSON Lines file. Each record is one complete line written with
  a single ``write`` under an exclusive lock and fsync'ed, so a process killed mid-append leaves at
  most a torn last line. Reading skips (and logs) a torn last line or a line that is not JSON; the
  next append cuts the torn line off first (under the lock, so no live writer is mid-line), so it
  never glues onto it.

No torch, no pandas: safe to import anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    import fcntl
except ImportError:  # not on Windows: appends there rely on O_APPEND alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "LineStore"]


def atomic_write(path: Path | str, write: Callable[[Path], Any]) -> Path:
    """Replace ``path`` with what ``write(tmp)`` writes to the temporary path ``tmp`` (for writers that
    want a file name: ``DataFrame.to_csv``, safetensors' ``save_file``). Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync(tmp)
        _replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` (see the module docstring). Creates the parent folder."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` (see the module docstring). Creates the parent folder."""
    return atomic_write_bytes(path, text.encode(encoding))


def _replace(tmp: Path, path: Path) -> None:
    os.chmod(tmp, _mode_for(path))
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def _mode_for(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (setting it, even briefly, races with other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform opens or syncs folders)."""
    try:
        _fsync(folder)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class LineStore:
    """Records (dicts) in an append-only JSON Lines file at ``path`` (created on the first append)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record in file order. A torn last line (no newline: an interrupted append)
        and lines that are not a JSON object are skipped with a warning; blank lines are ignored."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    log.warning("%s:%d: ignoring an incomplete last line (interrupted write)", self.path, number)
                    return
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    log.warning("%s:%d: ignoring a line that is not JSON (an interrupted write)", self.path, number)
                    continue
                if not isinstance(record, dict):
                    log.warning("%s:%d: ignoring a line that is not a JSON object", self.path, number)
                    continue
                yield record

    def append(self, record: dict[str, Any], **dumps: Any) -> None:
        """Add ``record`` as one line (``dumps``: keyword arguments for ``json.dumps``) and fsync it.

        The line goes out in a single ``write`` on a file opened for appending, under an exclusive
        ``flock``, so appends from several processes never interleave; if the file does not end with
        a newline (a torn line from a killed writer), that torn line is cut off first."""
        line = (json.dumps(record, **dumps) + "\n").encode()
        if b"\n" in line[:-1]:
            raise ValueError("a record must serialise to one line (pass no indent)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                log.warning("%s: dropping an incomplete last line (interrupted write) before appending", self.path)
                os.ftruncate(fd, _end_of_last_line(fd, size))
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _end_of_last_line(fd: int, size: int, chunk: int = 1 << 16) -> int:
    """Offset just past the last newline in the first ``size`` bytes of ``fd`` (0 if none), read backwards."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0
