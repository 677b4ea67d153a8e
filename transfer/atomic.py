"""Writing a whole file so that readers see the old one or the new one, never half.

Reports and the metrics textfile are read by other programs (a browser, a
node_exporter scraping every 15 s); a rename is what makes the swap atomic.
"""

from __future__ import annotations

import os
import secrets
from contextlib import suppress
from pathlib import Path

from sneakernet.catalog.durable import rename_durably
from sneakernet.catalog.errors import SourceError


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write `text` (UTF-8) to `path` via a temporary name in the same folder, fsync, rename."""
    path = Path(path)
    if path.is_dir():
        raise SourceError("target is a folder", path=str(path), hint="give a file name")
    if not path.parent.is_dir():
        raise SourceError("folder does not exist", path=str(path.parent),
                          hint="create the folder first, or write somewhere else")
    # A random suffix rather than mkstemp: mkstemp's 0600 would make a report that
    # others on the machine cannot open, while os.open applies the usual umask.
    # The name does not end in .prom, so node_exporter never reads a half file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n", closefd=False) as f:
                f.write(text)
            os.fsync(fd)
        finally:
            os.close(fd)
        rename_durably(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SourceError(f"cannot write file ({exc.strerror or exc})", path=str(path),
                          hint="check the folder's permissions and free space") from exc
    return path

