"""Writing results: atomically to a file, into a FIFO or device, or to stdout for ``-o -``.

A failed or interrupted build must leave nothing half-written and never destroy what ``-o`` names:

- A regular file (or a new one) is written to a temporary file beside it, flushed to disk, given
  the old file's mode, and renamed over it: readers see the old file or the whole new one. The
  whole output is built in memory first, so the temporary file exists only for the write itself.
- SIGTERM, SIGINT and SIGHUP during that window remove the temporary file before the signal takes
  effect. SIGKILL cannot be caught: its leftover (``.NAME.densenet-spec-PID-XXXX.tmp``) is removed
  by the next write to the same target once its process is gone.
- A symlink is followed: the file it points to is replaced, the link stays.
- A FIFO or character device (``/dev/null``, ``/dev/stdout``, a terminal) is written into, never
  replaced by a regular file; a FIFO with no reader is refused instead of blocking.
- Anything else (a folder, a block device, a socket) is refused, and so is a file that the user
  may not write (the rename would replace it all the same).

Every failure is a :class:`~densenet_spec.errors.ToolError` whose message starts with the path the
user gave, whatever the system call that failed. Writing to stdout fails as a :class:`StdoutError`,
whether through ``-o -`` or through anything a command prints while :func:`guarded_stdout` is on
(a full disk, a closed stdout, a reader gone from the pipe).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .errors import ToolError

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
_TAG = "densenet-spec"
_STALE_AFTER_S = 60.0  # a leftover younger than this may still be another process's write in progress


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path``: atomically for a file, streamed for a FIFO or device; ToolError if not."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        info = os.stat(path)  # follows symlinks: the kind of thing the data will land in
    except (FileNotFoundError, NotADirectoryError):  # a new file; or a parent that is not a folder, said below
        info = None
    except OSError as exc:
        raise _error(path, exc) from None
    if info is not None and (stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)):
        _write_stream(path, payload, fifo=stat.S_ISFIFO(info.st_mode))
        return
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{path}: not a regular file ({_kind(info.st_mode)}); refusing to replace it")
    # The rename would replace a file its owner made read-only (it needs only the folder writable).
    if info is not None and not os.access(path, os.W_OK):
        raise ToolError(f"{path}: cannot write: the file is read-only; make it writable or choose another name")
    target = Path(os.path.realpath(path))  # a symlink's file is replaced, not the link
    mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
    _replace(path, target, payload, mode)


def _replace(shown: Path, target: Path, payload: bytes, mode: int) -> None:
    """Write ``payload`` beside ``target`` and rename it into place; ``shown`` is the name for messages."""
    directory = target.parent
    if not directory.is_dir():
        reason = "does not exist (No such file or directory)" if not directory.exists() else "is not a folder"
        raise ToolError(f"{shown}: cannot write: the folder {directory} {reason}")
    _sweep_stale(directory, target.name)
    temp = _TempFile()
    with _removed_on_signal(temp):
        try:
            fd, name = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=directory)
            temp.path = Path(name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(name, mode)
            os.replace(name, target)
            temp.path = None
        except OSError as exc:
            raise _error(shown, exc) from None
        finally:
            temp.remove()
    _sync_directory(directory)


def _write_stream(path: Path, payload: bytes, *, fifo: bool) -> None:
    """Write into a FIFO or character device as it is; a FIFO nobody reads is an error, not a hang."""
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | (os.O_NONBLOCK if fifo else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if fifo and exc.errno == errno.ENXIO:
            raise ToolError(f"{path}: a FIFO with no reader; start the reader first") from None
        raise _error(path, exc) from None
    try:
        if fifo:
            os.set_blocking(fd, True)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise _error(path, exc) from None
    finally:
        os.close(fd)


def _error(path: Path, exc: OSError) -> ToolError:
    """An OSError as one line that names the user's path (not a temporary file's)."""
    return ToolError(f"{path}: cannot write: {exc.strerror or exc}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


class _TempFile:
    """The temporary file of a write in progress, if any: what a signal handler removes."""

    path: Path | None = None

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


@contextlib.contextmanager
def _removed_on_signal(temp: _TempFile) -> Iterator[None]:
    """Remove ``temp`` on SIGTERM, SIGINT or SIGHUP, then let the signal do what it did before.

    Handlers can only be set from the main thread; elsewhere the write runs without them (an
    exception still removes the file). An ignored signal stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], Any] | int] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        temp.remove()
        signal.signal(signum, previous.pop(signum))
        signal.raise_signal(signum)

    for signum in _SIGNALS:
        old = signal.getsignal(signum)
        if old is not signal.SIG_IGN:
            previous[signum] = signal.SIG_DFL if old is None else old
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _temp_prefix(name: str) -> str:
    # Short enough that the temporary name fits where the target's name fits (255 bytes).
    return f".{name[:100]}.{_TAG}-{os.getpid()}-"


def _sweep_stale(directory: Path, name: str) -> None:
    """Remove temporary files of earlier writes to ``name`` whose process is gone (killed by SIGKILL)."""
    prefix = f".{name[:100]}.{_TAG}-"
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        with contextlib.suppress(OSError, ValueError):
            if not _alive(int(pid)) and time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_AFTER_S:
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (not on Windows or every file system)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


SPEC_SUFFIXES = frozenset({".yaml", ".yml"})
CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".tar", ".ckpt", ".bin", ".safetensors"})
"""What specs and checkpoints are called: no output is one, and ``-o w.pt`` for ``w.py`` (a
one-letter typo) replaced weights, ``-o net.yaml`` a spec."""


def protected_kind(output: str | os.PathLike[str], reads: Iterable[str | os.PathLike[str]] = ()) -> str:
    """``"a spec file"`` or ``"a checkpoint file"`` where ``output`` names one (by its suffix, or
    as one of the files ``reads`` that the call reads, under any spelling), else ``""``: what a
    build must not write over."""
    suffix = Path(output).suffix.lower()
    if suffix in SPEC_SUFFIXES:
        return "a spec file"
    if suffix in CHECKPOINT_SUFFIXES:
        return "a checkpoint file"
    if any(same_file(output, read) for read in reads):
        return "a file it reads"
    return ""


def same_file(one: str | os.PathLike[str], other: str | os.PathLike[str]) -> bool:
    """Whether both name one existing file (a link or another spelling included)."""
    with contextlib.suppress(OSError):
        return os.path.exists(one) and os.path.exists(other) and os.path.samefile(one, other)
    return False


def emit(output: str, data: bytes | str) -> str:
    """Write ``data`` to ``output`` (``-`` is stdout); returns where it went, for messages."""
    if output == "-":
        if isinstance(data, bytes) and _binary(data) and _is_terminal(sys.stdout):
            raise ToolError("-o -: refusing to write binary output to a terminal; redirect it (> file) or give -o FILE")
        _write_stdout(data)
        return "stdout"
    problem = folder_problem(output)
    if problem:
        raise ToolError(problem)
    write_atomic(Path(output), data)
    return output


def _binary(data: bytes) -> bool:
    """Whether ``data`` is not text: a NUL byte, or not UTF-8 (PNG, PDF, ONNX; SVG comes as bytes too)."""
    if b"\x00" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _is_terminal(stream: Any) -> bool:
    with contextlib.suppress(AttributeError, OSError, ValueError):  # closed or replaced streams
        return bool(stream.isatty())
    return False


def folder_problem(output: str, example: str = "") -> str:
    """Why ``output`` cannot name a file, or ``""``: it is an existing folder, or it ends in a
    slash, so it names one.

    ``Path("out/")`` drops the slash: without this check ``-o out/`` wrote a file named ``out``.
    ``example``, a file name, makes the advice concrete (``-o out/densenet121.onnx``).
    """
    separators = tuple(sep for sep in {"/", os.sep, os.altsep} if sep)
    if not output.endswith(separators):
        if output == "-" or not os.path.isdir(output):
            return ""
        advice = f", e.g. -o {os.path.join(output, example)}" if example else ""
        return f"-o {output}: an existing folder; give a file name{advice}"
    folder = output.rstrip("".join(separators)) or output
    if os.path.isdir(folder):
        state = "is an existing folder"
    elif os.path.lexists(folder):
        state, example = "exists and is not a folder", ""
    else:
        state = "does not exist"
    advice = f", e.g. -o {os.path.join(folder, example)}" if example else ""
    return f"-o {output}: a path ending in '/' names a folder, and {folder} {state}; give a file name{advice}"


def _write_stdout(data: bytes | str) -> None:
    """Write ``data`` to stdout and flush it; a failure is a StdoutError (stdout closed, disk full, pipe gone)."""
    stream = sys.stdout
    if stream is None or isinstance(stream, _ClosedStdout):
        raise _closed_error()
    try:
        if isinstance(data, bytes):
            stream.buffer.write(data)
            stream.buffer.flush()
        else:
            stream.write(data)
            stream.flush()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            silence_stdout()  # the interpreter's final flush of what is buffered must not fail again
        raise stdout_error(exc) from None


class StdoutError(ToolError):
    """Writing to stdout failed.

    Attributes:
        broken_pipe: the reader went away (``| head``): the command line then ends quietly, as
            ``cat`` and ``git`` do, since the reader asked for no more; any other failure lost
            output that was asked for, and is reported.
    """

    def __init__(self, message: str, *, broken_pipe: bool = False) -> None:
        super().__init__(message)
        self.broken_pipe = broken_pipe


def stdout_error(exc: OSError) -> StdoutError:
    """The StdoutError for ``exc``, an error from writing to stdout."""
    if exc.errno == errno.EPIPE:
        return StdoutError("stdout: the reader closed the pipe before the output was written", broken_pipe=True)
    return StdoutError(f"densenet-spec: cannot write to stdout: {exc.strerror or exc}")


def _closed_error() -> StdoutError:
    return StdoutError(
        "densenet-spec: cannot write to stdout: it is closed; redirect it to a file or to /dev/null instead"
    )


class _GuardedStdout:
    """``sys.stdout`` while a command runs: its writes fail as StdoutError, not as a bare OSError.

    click, rich and print() write through ``sys.stdout``; their OSError names no file and would
    escape as a traceback. Everything but ``write`` and ``flush`` is the real stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise stdout_error(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise stdout_error(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ClosedStdout:
    """``sys.stdout`` when the process started with stdout closed (``>&-``), where Python sets it to
    None and click and rich then drop every write silently: here writing anything is a StdoutError."""

    encoding = "utf-8"
    errors = "strict"
    closed = False

    def write(self, text: str | bytes) -> int:
        if text:
            raise _closed_error()
        return 0

    def flush(self) -> None:
        """Nothing was written, so nothing is pending."""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("stdout is closed")

    @property
    def buffer(self) -> _ClosedStdout:
        return self


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """Route ``sys.stdout`` through a guard for the block: a failed write raises StdoutError.

    After a failure, stdout is pointed at /dev/null, so that the interpreter's final flush of what
    is still buffered does not fail again (with an "Exception ignored" message and exit 120).
    """
    original = sys.stdout
    sys.stdout = _ClosedStdout() if original is None else _GuardedStdout(original)
    try:
        yield
    except StdoutError:
        silence_stdout()
        raise
    finally:
        sys.stdout = original


def silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so that a later flush has somewhere to go."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
