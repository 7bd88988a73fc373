"""Files of a run, written atomically: a reader (or a resumed run) sees the old or the new content,
never a torn one."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile

import numpy as np

from jaxsim.config import SimConfig, config_toml


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``; the file gets
    the permissions a plain ``open`` would (the umask's), not mkstemp's owner-only 0600."""
    path = os.fspath(path)
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)           # read once, at import (os.umask sets it for the whole process while it reads)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, allow_nan=True, default=float) + "\n")


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path: str | os.PathLike, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buf.getvalue())


def save_config(cfg: SimConfig, path: str | os.PathLike) -> None:
    """The scenario as TOML; ``jaxsim.config.load_config`` reads it back equal."""
    write_text(path, config_toml(cfg))


def read_block_file(path: str, start: str, end: str) -> str:
    """A markdown file's text, checked to hold the markers ``start`` and ``end`` (exit with an error otherwise)."""
    if not os.path.exists(path):
        raise SystemExit(f"error: {path!r} does not exist")
    with open(path) as f:
        doc = f.read()
    if start not in doc or end not in doc:
        raise SystemExit(f"error: {path} has no {start} ... {end} block")
    return doc


def update_block(path: str, text: str, start: str, end: str) -> None:
    """Replace what lies between the markers ``start`` and ``end`` in a markdown file (atomically)."""
    doc = read_block_file(path, start, end)
    a, b = doc.index(start) + len(start), doc.index(end)
    atomic_write_bytes(path, (doc[:a] + "\n" + text + doc[b:]).encode())
