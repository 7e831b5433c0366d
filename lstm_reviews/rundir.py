"""The run directory: the one owner of every file a training run writes and every reader of them.

    config.json      the resolved Config, plus the text-standardization version
    vocabulary.txt   one token per line: line k is token id k ('' padding, '[UNK]', words...)
    model.keras      the best epoch's model (ids -> logit)
    history.csv      one row per epoch, written from state.json
    metrics.json     validation and test accuracy and loss, timings, backend, device
    state.json       where the run is (train.py's RunState): epochs done, the step within the
                     next, its backup, the history rows, the best epoch, fit done, evaluated,
                     exported; state.previous.json is the one before, to fall back on
    backup/          the variables at the state's step (model, optimizer, dropout seeds)
    logs/            TensorBoard
    .lock            locked (flock) by the process training or exporting the run; its pid

Training writes through `RunDir`; in a run of several processes, process 0 alone writes
(processes.py), the others read. Export, explain and the notebooks read through
`load_run`, which checks that the files belong together and that the vocabulary was made by
the standardization this code applies.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import functools
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from lstm_reviews.config import Config
from lstm_reviews.crashpoints import crash_point
from lstm_reviews.data.cache import write_atomically, write_text_atomically
from lstm_reviews.errors import UserError
from lstm_reviews.processes import writes_files
from lstm_reviews.startup import deferred_import, quiet_start

text = deferred_import("lstm_reviews.data.text")  # Keras: only a run's vocabulary needs it

CONFIG, VOCABULARY, MODEL, HISTORY, METRICS, STATE, PREVIOUS_STATE, LOCK = (
    "config.json",
    "vocabulary.txt",
    "model.keras",
    "history.csv",
    "metrics.json",
    "state.json",
    "state.previous.json",
    ".lock",
)
# The run directories this process holds the lock of (resolved path -> lock file descriptor):
# training exports its run while holding it, and must not be refused by itself.
_held_locks: dict[Path, int] = {}


class DamagedFile(Exception):
    """A run file that is torn or not what its state says (a crash, a full disk): the run
    falls back to the state before it."""


_STANDARDIZE_KEY = "standardize_version"  # stored beside the Config's fields in config.json


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths of a run directory and the readers and writers of its files."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def backup(self) -> Path:
        return self.path / "backup"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @contextlib.contextmanager
    def locked(self):
        """Holds the run directory's lock within: one process at a time trains or exports a
        run. UserError names the process that holds it. The lock is the kernel's (flock on
        .lock), so it ends with its process, however that ends: a killed run's lock never
        blocks. The file stays; its content is the holder's pid, for the message. The
        directory must exist; one this process cannot write is not locked (no run can be
        trained in it by this user)."""
        key = self.path.resolve()
        if key in _held_locks:  # held by this process already (training's own export)
            yield
            return
        try:
            descriptor = os.open(self / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            yield
            return
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
                raise UserError(
                    f"{self.path} is in use by process {holder or '(unknown)'}: it trains or "
                    f"exports this run; wait for it to end, or stop it"
                ) from None
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            _held_locks[key] = descriptor
            try:
                yield
            finally:
                del _held_locks[key]
        finally:
            os.close(descriptor)  # releases the lock

    def write_config(self, config: Config) -> None:
        values = {**dataclasses.asdict(config), _STANDARDIZE_KEY: text.STANDARDIZE_VERSION}
        write_text_atomically(self / CONFIG, json.dumps(values, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> Config:
        path = self / CONFIG
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object")
            config = Config.from_dict(values)
        except (OSError, ValueError, TypeError) as error:
            raise UserError(
                f"{path}: not a readable run config ({error}); expected the "
                f"config.json a training run writes"
            ) from None
        version = values.get(_STANDARDIZE_KEY, text.STANDARDIZE_VERSION)  # older runs: "2"
        if version != text.STANDARDIZE_VERSION:
            raise UserError(
                f"{path}: its vocabulary was made with text standardization "
                f"version {version}, this code applies {text.STANDARDIZE_VERSION}; "
                f"train the run again"
            )
        return config

    def write_vocabulary(self, vocabulary) -> None:
        # One token per line, exactly get_vocabulary(): line k is token id k.
        write_text_atomically(self / VOCABULARY, "\n".join(vocabulary) + "\n")

    def read_vocabulary(self) -> list:
        path = self / VOCABULARY
        # split("\n"), not splitlines(): a token may hold other Unicode line separators.
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "" and len(tokens) > 1:
            tokens.pop()  # the final newline
        if len(tokens) < 3 or tokens[0] != text.PADDING or tokens[1] != text.UNKNOWN:
            raise UserError(
                f"{path} is not a vocabulary.txt from training: expected '' on line 1, "
                f"'[UNK]' on line 2 and at least one word, got {tokens[:2]!r} and "
                f"{len(tokens)} lines"
            )
        # Each token once: line k is id k, and the lookup table of export and explain
        # refuses a token with two ids.
        first_lines = {}
        for number, token in enumerate(tokens, start=1):
            first = first_lines.setdefault(token, number)
            if first != number:
                raise UserError(
                    f"{path} line {number} repeats the token {token!r} of line {first}; "
                    f"expected each token once, as training writes it"
                )
        return tokens

    def read_history(self) -> list[dict]:
        """Rows of history.csv as dicts (empty if there is none)."""
        path = self / HISTORY
        if not path.exists():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def write_history(self, rows: list[dict]) -> None:
        """history.csv from the state's rows (epoch first, then the logs' keys), atomically."""
        if not writes_files():
            return
        if not rows:
            (self / HISTORY).unlink(missing_ok=True)
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomically(self / HISTORY, buffer.getvalue())

    def write_state(self, state: dict) -> None:
        """Commits `state`: the one write that moves the run on. The state it replaces stays
        as state.previous.json (its files too), to fall back on if this one's prove damaged."""
        current = self / STATE
        if not writes_files():
            return
        if current.exists():
            os.replace(current, self / PREVIOUS_STATE)
        write_text_atomically(current, json.dumps(state, indent=1) + "\n")

    def state_backup_name(self) -> str | None:
        """The backup state.json names; None if it has none or cannot be read."""
        try:
            return json.loads((self / STATE).read_text(encoding="utf-8")).get("backup")
        except (OSError, ValueError, AttributeError):
            return None

    def read_states(self) -> list[tuple[Path, dict]]:
        """[(path, state)] of state.json, then state.previous.json, those that exist and read
        as a state; a damaged one is named on standard error and skipped."""
        states = []
        for path in (self / STATE, self / PREVIOUS_STATE):
            if not path.exists():
                continue
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(state, dict) or "epochs_done" not in state:
                    raise ValueError("not a run state")
            except (OSError, ValueError) as error:
                warn(f"{path} is damaged ({error}); falling back to the state before it")
                continue
            states.append((path, state))
        return states

    def write_backup(self, name: str, arrays: dict) -> str:
        """backup/<name> (.npz of `arrays`), written atomically; returns its SHA-256, which
        the state records so that a torn or foreign file is recognized."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        content = buffer.getvalue()

        def write(file):
            file.write(content[: len(content) // 2])
            file.flush()
            crash_point("backup-write")  # half the file is on disk, under its temporary name
            file.write(content[len(content) // 2 :])

        write_atomically(self.backup / name, write)
        return hashlib.sha256(content).hexdigest()

    def read_backup(self, name: str, sha256: str) -> dict:
        """The arrays of backup/<name>; DamagedFile if it is missing, torn or not the file
        the state names (another checksum)."""
        path = self.backup / name
        try:
            content = path.read_bytes()
            if hashlib.sha256(content).hexdigest() != sha256:
                raise ValueError("its checksum is not the one the state recorded")
            with np.load(io.BytesIO(content), allow_pickle=False) as stored:
                return {key: stored[key] for key in stored.files}
        except (OSError, ValueError) as error:
            raise DamagedFile(f"{path} is damaged or missing ({error})") from None

    def remove_unused_backups(self, keep: set) -> None:
        """Deletes backup files (and temporary files a kill left) not named in `keep`."""
        if writes_files() and self.backup.is_dir():
            for path in self.backup.iterdir():
                if path.name not in keep:
                    path.unlink(missing_ok=True)

    def write_metrics(self, metrics: dict) -> None:
        write_text_atomically(self / METRICS, json.dumps(metrics, indent=2) + "\n")

    def read_metrics(self) -> dict:
        return json.loads((self / METRICS).read_text())


def warn(message: str) -> None:
    """One line on standard error: something was wrong and the run went on without it."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Run:
    """A trained run directory, loaded: the model as trained and the settings that made it."""

    path: Path
    config: Config
    vocabulary: list  # '' (padding) at 0, '[UNK]' at 1
    model: keras.Model  # noqa: F821  ids <int32>[batch, time] -> logits <float32>[batch, 1]

    @functools.cached_property
    def _vectorizer(self):
        return text.vectorizer_from_vocabulary(self.vocabulary)

    def encode(self, texts, truncate: bool = True) -> list:
        """Texts -> one <int32>[tokens] id array each, standardized and encoded as in training,
        and cut to their last config.eval_max_length (as the test set is read) unless
        truncate=False (needs TensorFlow)."""
        encoded = text.encode(self._vectorizer, list(texts))
        if not truncate:
            return [np.asarray(ids, np.int32) for ids in encoded]
        return [
            np.asarray(text.keep_last_tokens(ids, self.config.eval_max_length), np.int32)
            for ids in encoded
        ]


def check_run_files(path) -> RunDir:
    """The run directory at `path`; UserError if it is not one a finished training left."""
    run_dir = RunDir(path)
    if not run_dir.path.is_dir():
        raise UserError(
            f"run directory {run_dir.path} does not exist (expected a training run's output_dir)"
        )
    missing = [name for name in (CONFIG, VOCABULARY, MODEL) if not (run_dir / name).is_file()]
    if missing:
        raise UserError(
            f"run directory {run_dir.path} lacks {', '.join(missing)}: has training finished there?"
        )
    return run_dir


def load_run(path) -> Run:
    """Loads a run's config, vocabulary and model; UserError names what is missing or wrong."""
    run_dir = check_run_files(path)  # before Keras: a wrong path answers at once
    quiet_start()
    import keras

    import lstm_reviews.model.classifier  # noqa: F401  (registers the model's layers for loading)

    config = run_dir.read_config()
    vocabulary = run_dir.read_vocabulary()
    try:
        model = keras.saving.load_model(run_dir / MODEL, compile=False)
    except Exception as error:  # Keras raises many types for a damaged file; all mean the same
        raise UserError(f"cannot load {run_dir / MODEL}: {error}") from None
    embedding_rows = model.get_layer("embedding").input_dim
    if embedding_rows != len(vocabulary):
        raise UserError(
            f"{run_dir / VOCABULARY} has {len(vocabulary)} tokens but "
            f"{run_dir / MODEL} embeds {embedding_rows}: they come from different runs"
        )
    return Run(run_dir.path, config, vocabulary, model)
