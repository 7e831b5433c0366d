"""Cached artifacts: made once, written atomically, found again by the settings that made them.

The token ids, the unlabeled reviews' ids, the word vectors and the pretrained language
model each take seconds to half an hour to make and depend on a handful of settings. Each
is a file `<cache_dir>/<kind>-<12 hex digits of its settings' hash>.<suffix>`: a change of
any setting that feeds it gives another name, so a stale file is never read by mistake.

    cached(path, build, save, load)     load the file if it is there, else build and save it

Files are written to a temporary name beside the target and renamed over it (`os.replace`
is atomic): a reader sees the old file or the whole new one, never half of one. The
temporary's name holds its writer's process id and host (`.<name>.<pid>-<host hash>.<random>`):
one left by a killed writer is deleted the next time a cached artifact of that folder is
looked up, one of a writer still at work is kept. A failed write raises an OSError naming
the target file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lstm_reviews.backend import tensorflow_or_none
from lstm_reviews.errors import UserError, naming_the_path
from lstm_reviews.processes import writes_files

log = logging.getLogger(__name__)
T = TypeVar("T")
# A temporary of write_atomically: "." + target name + "." + writer + "." + mkstemp's letters.
_TEMPORARY = re.compile(r"\..+\.(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})\.[a-z0-9_]+")


def short_hash(value) -> str:
    """12 hex digits of the SHA-256 of `value` as sorted JSON: the key in a cache file's name."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


@naming_the_path
def write_atomically(path: Path, write: Callable) -> None:
    """Calls write(binary file) on a temporary file beside `path`, then renames it over `path`.

    The file is flushed to disk before the rename and the directory after it: a power cut
    then leaves the old file or the whole new one, not a renamed file whose bytes never
    reached the disk (file systems may order the rename before the data). In a run of several
    processes only process 0 writes (processes.py): elsewhere this writes nothing.
    """
    if not writes_files():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{_writer()}.", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Flushes a directory's entries (a rename into it) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a directory; the file's bytes are synced already
    finally:
        os.close(descriptor)


def _writer() -> str:
    """This process, as temporaries name it: "<pid>-<8 hex digits of the host name>"."""
    return f"{os.getpid()}-{_host_hash()}"


def _host_hash() -> str:
    # Another machine's process ids say nothing here (a cache folder on a shared disk).
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_abandoned_temporaries(folder: Path) -> None:
    """Deletes the temporaries of write_atomically in `folder` whose writer, on this machine,
    is gone (killed mid-write); those of live writers and of other machines stay."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return  # no folder yet (or not readable): nothing of ours to clean
    host = _host_hash()
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match and match["host"] == host and not process_alive(int(match["pid"])):
            try:
                entry.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only cache: it stays, as it would have without this


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; set it straight back
    os.umask(mask)
    return mask


def write_text_atomically(path: Path, text: str) -> None:
    """`text` as UTF-8 at `path`, written atomically."""
    write_atomically(Path(path), lambda file: file.write(text.encode("utf-8")))


def require_tensorflow(what: str, path: Path, instead: str) -> None:
    """Raises UserError if TensorFlow is missing: `what`, not cached at `path`, needs it."""
    if tensorflow_or_none() is None:
        raise UserError(
            f"{what} is not cached at {path} and making it needs TensorFlow; run "
            f"once with TensorFlow installed, or pass {instead}"
        )


def cached(
    path: Path, build: Callable[[], T], save: Callable[[Path, T], None], load: Callable[[Path], T]
) -> T:
    """The artifact at `path`: loaded if the file exists, else built, saved atomically, returned.

    save(path, value) must write through write_atomically; load(path) reads it back and
    raises UserError for a file it cannot use (damaged, other settings): it is then rebuilt.
    """
    path = Path(path)
    if writes_files():
        remove_abandoned_temporaries(path.parent)
    if path.exists():
        try:
            return load(path)
        except UserError as error:
            log.warning("%s; rebuilding it", error)
    if writes_files():  # before the build, which may take long: a file there fails now
        path.parent.mkdir(parents=True, exist_ok=True)
    value = build()
    save(path, value)
    return value
