"""Output files of the data tools: written whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to a temp file beside ``path`` and rename it into place, so a crash or an
    interrupt never leaves a half-written file where a reader expects a whole one."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """``write_atomically`` for bytes (a parquet file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes it private; the output is an ordinary file
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def jsonl_text(rows: list[dict]) -> str:
    """One JSON object per line, in ``rows`` order (the format ``bppo data`` writes)."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def json_text(record: dict) -> str:
    return json.dumps(record, indent=1) + "\n"
