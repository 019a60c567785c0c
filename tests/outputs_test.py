"""Writing outputs: atomic replacement, FIFOs and devices left as they are, signals, messages naming the file."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densenet_spec.cli import app
from densenet_spec.errors import ToolError
from densenet_spec.outputs import write_atomic

ROOT = Path(__file__).resolve().parent.parent
posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and signals are POSIX")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_new_file_gets_umask_mode(tmp_path: Path) -> None:
    mask = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.txt", "hello")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert (tmp_path / "a.txt").read_text() == "hello"


@pytest.mark.parametrize("mode", [0o600, 0o755, 0o644])
def test_replacing_a_file_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "model.py"
    target.write_text("old")
    target.chmod(mode)
    write_atomic(target, b"new")
    assert (target.read_text(), stat.S_IMODE(target.stat().st_mode)) == ("new", mode)
    assert _leftovers(tmp_path) == []


def test_a_read_only_file_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename needs only the folder writable: a file made read-only is refused, left as it was."""
    target = tmp_path / "model.py"
    target.write_text("old")
    target.chmod(0o444)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root may write anything: what a user would be told
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and real(path, mode))
    with pytest.raises(ToolError, match=r"model.py: cannot write: the file is read-only; make it writable"):
        write_atomic(target, b"new")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


@posix_only
def test_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


@posix_only
def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    write_atomic(link, "x")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x"


@posix_only
def test_dev_null_is_written_into_not_replaced() -> None:
    write_atomic(Path("/dev/null"), b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@posix_only
def test_fifo_with_a_reader_receives_the_data(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    payload = b"x" * 300_000  # more than a pipe buffer: the writer must block until read
    for _ in range(100):  # wait until the reader has opened its end
        try:
            write_atomic(fifo, payload)
            break
        except ToolError:
            time.sleep(0.02)
    reader.join(5)
    assert received == [payload]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@posix_only
def test_fifo_without_a_reader_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ToolError, match=f"^{fifo}: a FIFO with no reader"):
        write_atomic(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_folder_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"not a regular file \(a folder\); refusing to replace it"):
        write_atomic(tmp_path, "x")


def test_missing_folder_is_named_not_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "x.py"
    with pytest.raises(ToolError) as info:
        write_atomic(target, "x")
    message = str(info.value)
    assert message.startswith(f"{target}: cannot write: the folder {tmp_path / 'nonexistent'} does not exist")
    assert ".tmp" not in message


def test_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ToolError, match="is not a folder"):
        write_atomic(tmp_path / "file" / "x.py", "x")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_no_space_left_names_the_file() -> None:
    with pytest.raises(ToolError, match=r"^/dev/full: cannot write: No space left on device$"):
        write_atomic(Path("/dev/full"), b"x" * 10)


def _python(code: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stderr=subprocess.PIPE)


@posix_only
def test_file_too_large_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    code = (
        "import resource, signal\n"
        "from pathlib import Path\n"
        "from densenet_spec.outputs import write_atomic\n"
        "from densenet_spec.errors import ToolError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n    write_atomic(Path('big.bin'), b'x' * 5000)\n"
        "except ToolError as exc:\n    raise SystemExit(str(exc))\n"
    )
    process = _python(code, tmp_path)
    _, err = process.communicate(timeout=60)
    assert err.decode().strip() == "big.bin: cannot write: File too large"
    assert list(tmp_path.iterdir()) == []


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_during_the_write_removes_the_temp_file(tmp_path: Path, signum: int) -> None:
    # fsync is made slow so that the signal lands while the temporary file exists. The child starts
    # from the default action: a shell that runs the tests in the background has SIGINT ignored,
    # and an ignored signal stays ignored (as the shell asked).
    code = (
        f"import os, signal, sys, time\nsignal.signal({int(signum)}, signal.SIG_DFL)\n"
        "from pathlib import Path\n"
        "from densenet_spec import outputs\n"
        "def slow(fd):\n    sys.stderr.write('writing\\n'); sys.stderr.flush(); time.sleep(30)\n"
        "outputs.os.fsync = slow\n"
        "outputs.write_atomic(Path('out.onnx'), b'x' * 1000)\n"
    )
    process = _python(code, tmp_path)
    assert process.stderr is not None
    assert process.stderr.readline() == b"writing\n"
    assert len(_leftovers(tmp_path)) == 1
    process.send_signal(signum)
    process.communicate(timeout=30)
    assert process.returncode != 0
    assert list(tmp_path.iterdir()) == []


@posix_only
def test_leftover_of_a_killed_write_is_swept_by_the_next(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".out.json.densenet-spec-{dead.pid}-abc123.tmp"
    young = tmp_path / f".out.json.densenet-spec-{dead.pid}-def456.tmp"
    running = tmp_path / f".out.json.densenet-spec-{os.getpid()}-ghi789.tmp"
    other = tmp_path / f".other.json.densenet-spec-{dead.pid}-jkl012.tmp"
    for path in (stale, young, running, other):
        path.write_text("partial")
    old = time.time() - 3600
    for path in (stale, running, other):
        os.utime(path, (old, old))
    write_atomic(tmp_path / "out.json", "{}")
    assert _leftovers(tmp_path) == sorted(p.name for p in (young, running, other))


def test_cli_reports_missing_output_folder(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "x.py"
    result = CliRunner().invoke(app, ["build", "densenet-40-k12", "--to", "torch", "-o", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{target}: cannot write: the folder")
    assert "Traceback" not in result.stderr


def test_stdout_closed_early_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from densenet_spec.outputs import emit

    class ClosedPipe:
        def write(self, data: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(ToolError, match=r"^stdout: the reader closed the pipe"):
        emit("-", "x" * 100)


def test_emit_refuses_a_path_ending_in_a_slash(tmp_path: Path) -> None:
    """``Path("new/")`` drops the slash: without the check a file named ``new`` was written."""
    from densenet_spec.outputs import emit

    with pytest.raises(ToolError, match=r"names a folder, and .*new does not exist; give a file name$"):
        emit(f"{tmp_path / 'new'}/", "x")
    assert list(tmp_path.iterdir()) == []


class _FailingStream:
    """A text stream whose writes fail with ``errno``, as /dev/full's (ENOSPC) or a gone reader's (EPIPE)."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, errno: int) -> None:
        self.errno = errno

    def write(self, text: str) -> int:
        raise OSError(self.errno, os.strerror(self.errno))

    def flush(self) -> None:
        raise OSError(self.errno, os.strerror(self.errno))

    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize(("errno", "broken_pipe"), [(28, False), (32, True)])
def test_guarded_stdout_names_stdout_in_what_fails(
    monkeypatch: pytest.MonkeyPatch, errno: int, broken_pipe: bool
) -> None:
    """click's, rich's and print()'s writes fail as a StdoutError, not as an OSError that names no file."""
    from densenet_spec.outputs import StdoutError, guarded_stdout

    stream = _FailingStream(errno)
    monkeypatch.setattr(sys, "stdout", stream)
    with pytest.raises(StdoutError) as caught, guarded_stdout():
        print("a table")
    assert caught.value.broken_pipe is broken_pipe
    if not broken_pipe:
        assert str(caught.value) == f"densenet-spec: cannot write to stdout: {os.strerror(errno)}"
    assert sys.stdout is stream


def test_guarded_stdout_when_stdout_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python sets sys.stdout to None when the process starts with it closed; click and rich then drop
    every write without a word. Under the guard the first write fails instead, and nothing else does."""
    import typer

    from densenet_spec.outputs import StdoutError, guarded_stdout

    monkeypatch.setattr(sys, "stdout", None)
    with guarded_stdout():
        typer.echo("", nl=False)  # nothing to write: no failure
    with pytest.raises(StdoutError, match=r"^densenet-spec: cannot write to stdout: it is closed"), guarded_stdout():
        typer.echo("a line")
    assert sys.stdout is None


def test_binary_output_is_not_written_to_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """PNG, PDF and ONNX bytes on a terminal are noise that can upset it; text (SVG, DOT) is fine."""
    import io

    from densenet_spec.outputs import emit

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    with pytest.raises(ToolError, match="refusing to write binary output to a terminal"):
        emit("-", b"\x89PNG")
    assert emit("-", "digraph {}\n") == "stdout" and terminal.getvalue() == "digraph {}\n"
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><text>ü</text></svg>\n'
    monkeypatch.setattr(sys.stdout, "buffer", io.BytesIO(), raising=False)
    assert emit("-", svg.encode()) == "stdout"  # rendered SVG comes as bytes: text all the same
