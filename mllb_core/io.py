"""File IO shared by every package: atomic writes (results, configs, checkpoint markers, tables)
and the one JSON reader of the data readers.

A reader sees the old file or the new one, never a partial one: text goes to a hidden temp file
in the target directory, is fsynced, then ``os.replace``-d onto the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any

from mllb_core.errors import UserError


def _umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# NamedTemporaryFile creates files 0600; a results file should get the ordinary mode so the
# leaderboard (possibly another user on a shared disk) can read it.
_FILE_MODE = 0o666 & ~_umask()


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> pathlib.Path:
    """Write ``obj`` as JSON to ``path`` atomically, without schema validation; return the path.

    The text is sorted-key, 2-space indented, UTF-8 (``ensure_ascii=False``), ends with a
    newline and contains no NaN/infinity, so the same object always gives the same bytes.
    Parents are created. The text goes to a hidden ``.tmp-*`` file in the target directory,
    is flushed and fsynced, then ``os.replace``-d onto the target, so readers see the old file
    or the new one, never a partial one. On any exception the temp file is removed, an existing
    target is untouched, and the exception propagates (``TypeError``/``ValueError`` for an
    object that is not JSON data; those are raised before anything is created).
    """
    # Serialize first: an unserializable object then fails before the filesystem is touched.
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` atomically; see write_json_atomic."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # newline="\n": the same bytes on every platform.
    tmp = tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="\n", dir=target.parent,
                                      prefix=".tmp-", delete=False)
    try:
        with tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _FILE_MODE)
        os.replace(tmp.name, target)
    except BaseException:
        # BaseException: a Ctrl-C mid-write must not leave a temp file behind either.
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(target.parent)
    return target


def _fsync_directory(directory: pathlib.Path) -> None:
    # Makes the rename itself durable after a power loss. Not possible on every platform
    # (Windows cannot open a directory); the file's own content is already synced.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike[str], error: type[UserError], missing: str) -> Any:
    """Load a JSON file; a missing file, invalid JSON or non-UTF-8 text is ONE ``error``.

    ``missing`` is the message for a file that does not exist (the caller names what the file
    is); a parse error names the file and the line and column (or the byte offset).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise error(missing) from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: line {exc.lineno}, column {exc.colno}: "
                    f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid JSON: not UTF-8 text (byte offset {exc.start})") from None
