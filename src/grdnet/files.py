"""Output locations, created and checked before any work starts, so a bad --output is a one-line error up front."""

from __future__ import annotations

import tempfile
from pathlib import Path

from grdnet.errors import DataError


def writable_folder(folder: Path, option: str = "--output") -> Path:
    """Create `folder` (with parents) and check a file can be written in it; DataError naming `option` otherwise
    (a file in the path, no permission, a read-only file system)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = "a file is in the way" if isinstance(error, (FileExistsError, NotADirectoryError)) else error.strerror or error
        raise DataError(f"{folder}: cannot write here ({reason}); choose another {option}") from None
    return folder
