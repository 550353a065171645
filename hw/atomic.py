"""Atomic writes of the files a user keeps (a measurement, a benchmark run, a trace): a temporary file in the
same folder, flushed to disk, then renamed over the target. A crash or a full disk mid-write leaves the previous
file whole (and no half file); the temporary file is removed on failure. :func:`file_sha256` is the one digest that
checks such a file later (a sweep store's entries, a trained learner's files).

The lowest layer (``hw``) so that the meters and every ``bench`` layer above can use it; no imports beyond the
standard library, so ``python -m bench monitor`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file beside it and ``os.replace``."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, a read-only folder, an interrupt: the old file stays, no half file
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is not None and Path(exc.filename) == tmp:
            exc.filename = str(path)  # the error names the file the user asked for, not our temporary name
        elif isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
                      make_parents: bool = True) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded (UTF-8 by default)."""
    atomic_write_bytes(path, text.encode(encoding), make_parents=make_parents)


def check_writable_target(path: str | os.PathLike) -> str | None:
    """Why an output file cannot be written at ``path`` (a folder, a missing or non-folder parent), or None.

    Checked before minutes of work, so a typo in ``--out`` does not lose them."""
    if not str(path).strip():
        return "an empty path; allowed: a file path"
    path = Path(path)
    if path.is_dir():
        return "is a directory; allowed: a file path"
    parent = path.parent
    if not parent.exists():
        return f"its folder {str(parent)!r} does not exist; allowed: a file in an existing folder"
    if not parent.is_dir():
        return f"{str(parent)!r} is not a folder; allowed: a file in an existing folder"
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks (a file may be larger than memory)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
