"""Small file helpers shared by every part: content hashes, atomic writes, sizes.

MB in optim always means 10^6 bytes (as in the users' budgets); MiB is never used unnamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BYTES_PER_MB = 1_000_000


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def size_mb(num_bytes: int) -> float:
    """Bytes → MB (10^6 bytes)."""
    return num_bytes / BYTES_PER_MB


def total_size_bytes(paths: Iterable[str | Path]) -> int:
    """Sum of file sizes in bytes (an artifact's size is the sum of all its files)."""
    return sum(Path(p).stat().st_size for p in paths)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory and rename,
    so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """JSON-encode ``obj`` (indent 2, sorted keys) and write it atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def parse_toml(raw: bytes, source: str | Path, what: str) -> dict[str, Any]:
    """Decode the bytes of a TOML file (UTF-8) into a dict.

    ``what`` names the kind of file in the message (``"model card"``, ``"policy file"``).
    Raises :class:`optim.errors.InputError` naming ``source`` if the bytes are not UTF-8 TOML.
    """
    import tomllib

    from optim.errors import InputError

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {source} is not valid TOML ({e}); fix the file") from None
