"""The run directory: the one owner of every file a training run writes and every reader of them.

    config.json      the resolved Config, plus the text-standardization version
    vocabulary.txt   one token per line: line k is token id k ('' padding, '[UNK]', words...)
    model.keras      the best epoch's model (ids -> logit)
    history.csv      one row per epoch (Keras' CSVLogger)
    metrics.json     validation and test accuracy and loss, timings, backend, device
    backup/          Keras' BackupAndRestore (a killed run resumes from it)
    logs/            TensorBoard

Training writes through `RunDir`; export, explain and the notebooks read through
`load_run`, which checks that the files belong together and that the vocabulary was made by
the standardization this code applies.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
from pathlib import Path

import numpy as np

from lstm_reviews import text
from lstm_reviews.cache import write_text_atomically
from lstm_reviews.config import Config
from lstm_reviews.errors import UserError

CONFIG, VOCABULARY, MODEL, HISTORY, METRICS = (
    "config.json",
    "vocabulary.txt",
    "model.keras",
    "history.csv",
    "metrics.json",
)
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
        return tokens

    def read_history(self) -> list[dict]:
        """Rows of history.csv as dicts (empty if there is none)."""
        path = self / HISTORY
        if not path.exists():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def trim_history(self, epochs_done: int) -> list[dict]:
        """Keeps the rows of the epochs the backup holds, so a resumed run logs each epoch once.

        A kill between CSVLogger's write and BackupAndRestore's could otherwise leave a row
        for an epoch that is trained again.
        """
        path = self / HISTORY
        rows = [row for row in self.read_history() if int(row["epoch"]) < epochs_done]
        if rows:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            write_text_atomically(path, buffer.getvalue())
        elif path.exists():
            path.unlink()  # CSVLogger writes the header again
        return rows

    def backup_epochs(self) -> int:
        """Epochs finished according to BackupAndRestore's metadata (0 without a backup)."""
        path = self.backup / "training_metadata.json"
        if not path.exists():
            return 0
        try:
            return int(json.loads(path.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"{path}: unreadable backup metadata ({error}); delete "
                f"{self.backup} to restart the run from its first epoch"
            ) from None

    def write_metrics(self, metrics: dict) -> None:
        write_text_atomically(self / METRICS, json.dumps(metrics, indent=2) + "\n")

    def read_metrics(self) -> dict:
        return json.loads((self / METRICS).read_text())


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
        and cut to config.max_length unless truncate=False (needs TensorFlow)."""
        encoded = text.encode(self._vectorizer, list(texts))
        if not truncate:
            return [np.asarray(ids, np.int32) for ids in encoded]
        return [
            np.asarray(text.keep_last_tokens(ids, self.config.max_length), np.int32)
            for ids in encoded
        ]


def load_run(path) -> Run:
    """Loads a run's config, vocabulary and model; UserError names what is missing or wrong."""
    import keras

    import lstm_reviews.model  # noqa: F401  (registers the model's layers for loading)

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
