"""Model directories in TF Serving's layout: numbered versions, published atomically.

A version is written into a hidden staging directory of the model directory (TF Serving
ignores names that are not numbers), flushed to disk, then renamed to the next free number;
the staging directories that killed exports left are deleted by the next export.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

from lstm_reviews.data.cache import process_alive
from lstm_reviews.errors import UserError

_VERSION_NAME = re.compile(r"[0-9]+")
STAGING_PREFIX = ".export-"  # hidden, not a number: TF Serving never picks it up


def version_dirs(model_dir: Path) -> list[Path]:
    """The numbered version directories in model_dir (TF Serving's layout), lowest first."""
    versions = [
        path
        for path in Path(model_dir).iterdir()
        if _VERSION_NAME.fullmatch(path.name) and path.is_dir()
    ]
    return sorted(versions, key=lambda path: int(path.name))


def next_version(out_dir: Path) -> int:
    versions = version_dirs(out_dir)
    return int(versions[-1].name) + 1 if versions else 1


def fsync_tree(root: Path) -> None:
    """Flushes every file and directory under root, so the rename publishes finished bytes."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(folder))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the data files are synced already
    finally:
        os.close(fd)


def remove_abandoned_staging(out_dir: Path) -> None:
    """Deletes the staging directories of exports whose process is gone (killed mid-write);
    those of exports still running stay."""
    for staging in out_dir.glob(f"{STAGING_PREFIX}*"):
        pid = staging.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, out_dir: Path) -> Path:
    """Renames staging to the next free version number; retries if another export took it."""
    for _ in range(100):
        target = out_dir / str(next_version(out_dir))
        try:
            os.rename(staging, target)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # a concurrent export published this number first
            raise
        fsync_dir(out_dir)
        return target
    raise UserError(f"could not find a free version number in {out_dir}")


def write_saved_model(archive, path: Path) -> None:
    """TensorFlow writes the archive's graph and variables as a SavedModel in `path`."""
    import tensorflow as tf

    # TensorFlow logs "Assets written to: <the hidden staging path>" at INFO: a path that
    # is renamed a moment later only misleads; the published version is printed instead.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel("WARNING")
    try:
        archive.write_out(str(path), verbose=False)
    finally:
        tf_logger.setLevel(level)


def published_version(model_dir: Path, run_id: str) -> Path | None:
    """The version of model_dir that export.json says the run `run_id` published (the last,
    if several); None if none did."""
    model_dir = Path(model_dir)
    found = None
    if model_dir.is_dir():
        for version in version_dirs(model_dir):
            try:
                info = json.loads((version / "assets.extra" / "export.json").read_text())
            except (OSError, ValueError):
                continue  # not one of ours, or damaged: not this run's
            if isinstance(info, dict) and info.get("run_id") == run_id:
                found = version
    return found
