"""Writing results: atomically to a file, or to stdout for ``-o -``.

A failed build must leave nothing half-written, so every file is written to a temporary file
beside its destination and moved into place only once complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    payload = data.encode() if isinstance(data, str) else data
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def emit(output: str, data: bytes | str) -> str:
    """Write ``data`` to ``output`` (``-`` is stdout); returns where it went, for messages."""
    if output == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            sys.stdout.flush()
        return "stdout"
    write_atomic(Path(output), data)
    return output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
