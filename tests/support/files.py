"""Writing through a filesystem under test with plain system calls, as a server does."""

from __future__ import annotations

import os
from pathlib import Path


def append_file(path: Path, data: bytes, *, sync: bool) -> None:
    """Append ``data`` to ``path`` (created if missing) and, with ``sync``, fsync it: one open,
    write, fsync and close, each a request of its own to a FUSE filesystem."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
