"""Atomic file output, the one implementation the suite uses.

Write to a uniquely named temporary file in the target's folder, then ``os.replace`` it over
the target: a reader (or a crash, or a second process of a sweep) never sees a half-written
file, and on error the target is left untouched. The file gets the usual permissions
(0o666 minus the umask), not ``mkstemp``'s 0o600. Torch-free; the trace layer, the simulator,
the profiler and the experiments all write through here.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it over ``path``.

    Parent folders are created. ``suffix`` is the temporary file's extension (some writers,
    matplotlib's ``savefig`` among them, choose a format from it).
    """
    target = Path(path)
    if target.exists() and not target.is_file():  # os.replace would swap out a folder or device
        if target.is_dir():
            raise OSError(errno.EISDIR, "is a folder, not a file", str(target))
        raise OSError(errno.EEXIST, "is not a regular file (not overwritten)", str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    except OSError as e:
        raise _naming(e, target, None) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _naming(e, target, tmp) from None
        raise


def _naming(e: OSError, target: Path, tmp: str | None) -> OSError:
    """``e`` as an OSError naming the destination ``target``: a disk-full error carries no file
    name, and one about the temporary file would name a ``.<name>.<random>.tmp`` the user never
    asked for. Errors about other files (a folder above the target) are returned unchanged."""
    name = None if e.filename is None else os.fspath(e.filename)
    ours = (
        name is None
        or name in (tmp, str(target))
        or (tmp is None and Path(name).name.startswith(f".{target.name}."))
    )
    if not ours:
        return e
    reason = os.strerror(e.errno) if e.errno else (e.strerror or str(e) or type(e).__name__)
    return OSError(e.errno, reason, str(target))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int = 2) -> Path:
    """Write ``obj`` through the one sanitizer (:mod:`common.jsonsafe`: sorted keys, strict
    JSON, non-finite floats as null) with one final newline, atomically; returns the path."""
    from common.jsonsafe import dumps

    return write_text_atomic(path, dumps(obj, indent=indent) + "\n")


def write_parquet_atomic(
    df, path: str | os.PathLike, compression: str = "zstd", metadata: dict | None = None
) -> Path:
    """Write a DataFrame (without its index) as Parquet atomically; returns the path.

    The pandas/pyarrow schema metadata (library versions) is dropped: the same table gives the
    same bytes whichever versions wrote it; ``metadata`` ({str: str}) is stored instead.
    pyarrow is imported here only.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return Path(path)
