"""Writing files so that a reader never sees half of one: the kit's one home for it.

Every package of the kit writes through `write_atomically`: the content goes
to a temporary file beside the target, is flushed to disk, gets the
permissions a plain `open(path, "w")` would give (mkstemp's are 0600), and is
then renamed over the target in one step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union


def write_atomically(path: Union[str, os.PathLike], content: Union[bytes, str], *, executable: bool = False) -> None:
    """Writes `content` (bytes, or text as UTF-8) to `path` via a temporary file and a rename.

    Args:
        path: the file to create or replace; its folder must exist.
        content: the whole new content.
        executable: also give the execute permissions the umask allows (for scripts).

    Raises:
        OSError: the folder is missing or not writable (nothing is left behind).
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, (0o777 if executable else 0o666) & ~current_umask())
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
