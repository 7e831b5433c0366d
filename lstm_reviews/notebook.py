"""The set-up the walkthrough notebooks share: where things go, the settings, the run to read.

    from lstm_reviews.notebook import setup, finished_run
    nb = setup()                  # nb.small, nb.config, nb.run_dir, nb.export_dir
    run_dir = finished_run(nb)    # $LSTM_REVIEWS_RUN_DIR, else notebook 02's run, else trains one

Two modes. LSTM_REVIEWS_SMALL=1: tiny settings that run in seconds (what the tests execute,
on whatever small aclImdb tree LSTM_REVIEWS_DATA points at; the numbers then mean nothing).
Unset: the package's default recipe on the full data. Runs, exports and the caches go under
the repository root (all git-ignored), or under $LSTM_REVIEWS_WORK_DIR when set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from lstm_reviews.config import Config

# Seconds on 2 CPU cores, and still every step of the real recipe.
SMALL_SETTINGS = dict(
    vocab_size=300, max_length=60, embedding_dim=16, units=8, batch_size=16, epochs=1, lm_epochs=1
)


@dataclasses.dataclass(frozen=True)
class Setup:
    small: bool
    config: Config
    run_dir: Path  # where notebook 02 trains
    export_dir: Path

    def describe(self) -> str:
        data = self.config.data or os.environ.get("LSTM_REVIEWS_DATA", "Keras cache or download")
        return f"{'small mode' if self.small else 'full data'} | data: {Path(data).name}"


def setup() -> Setup:
    # Keras' "N calls triggered tf.function retracing" warnings are expected when reviews of
    # many lengths are inspected one batch at a time; in a walkthrough they only bury the point.
    # TensorFlow sets its logger's level as it is imported, so import it first, without its
    # start-up lines (a kernel has no command to set that up).
    from lstm_reviews.startup import quiet_start

    quiet_start("tensorflow")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    small = os.environ.get("LSTM_REVIEWS_SMALL") == "1"
    work_dir = Path(os.environ.get("LSTM_REVIEWS_WORK_DIR", "..")).resolve()
    run_dir = work_dir / "runs" / "notebook_imdb"
    export_dir = work_dir / "saved_models" / "notebook_imdb"
    places = dict(
        cache_dir=str(work_dir / ".cache" / "lstm_reviews"),
        output_dir=str(run_dir),
        export_dir=str(export_dir),
        export=False,
    )  # notebook 04 exports
    config = Config(**places, **(SMALL_SETTINGS if small else {}))
    return Setup(small, config, run_dir, export_dir)


def finished_run(nb: Setup) -> Path:
    """A finished run: $LSTM_REVIEWS_RUN_DIR if set, else the one notebook 02 trained; failing
    both, one trained now with nb.config (seconds in small mode, the full recipe otherwise)."""
    if os.environ.get("LSTM_REVIEWS_RUN_DIR"):
        return Path(os.environ["LSTM_REVIEWS_RUN_DIR"])
    if not (nb.run_dir / "metrics.json").exists():
        from lstm_reviews.train import train_and_evaluate

        train_and_evaluate(nb.config, nb.run_dir)
    return nb.run_dir


def load_finished_run(nb: Setup):
    """finished_run, loaded (lstm_reviews.Run), reading its reviews where this notebook finds
    them: a run's own data path may be relative to where it was trained."""
    from lstm_reviews.api import load_run

    run = load_run(finished_run(nb))
    return dataclasses.replace(run, config=dataclasses.replace(run.config, data=nb.config.data))


# Notebook 05's comparison, the recipe of docs/variants.md's table: every cell trained the
# same way, without the language-model pretraining (it would cost about as much again per
# cell), at 1e-3, the rate the recipe uses without it, and with the smaller settings of the
# time the table was first measured, so that its runs and the notebook's are the same runs.
VARIANT_SETTINGS = dict(
    lm_epochs=0,
    learning_rate=1e-3,
    adversarial_epsilon=0.0,
    vocabulary_from="train",
    eval_max_length=600,
    units=64,
    epochs=4,
    export=False,
)


def load_variant_runs(nb: Setup) -> dict:
    """{cell name: finished run, loaded (lstm_reviews.Run)} for every --cell, trained alike
    (VARIANT_SETTINGS), reading its reviews where this notebook finds them (load_finished_run).

    $LSTM_REVIEWS_VARIANT_RUNS/<cell> when that is set (docs/variants.md's runs), else
    runs/variants/<cell> beside notebook 02's run, trained here if missing (seconds each in
    small mode; docs/variants.md gives the full data's times).
    """
    from lstm_reviews.api import load_run
    from lstm_reviews.config import CELL_TYPES

    root = os.environ.get("LSTM_REVIEWS_VARIANT_RUNS")
    root = Path(root) if root else nb.run_dir.parent / "variants"
    runs = {}
    for cell in CELL_TYPES:
        run_dir = root / cell
        if not (run_dir / "metrics.json").exists():
            from lstm_reviews.train import train_and_evaluate

            # Small mode keeps its seconds-long sizes.
            sizes = ("units", "epochs") if nb.small else ()
            settings = {k: v for k, v in VARIANT_SETTINGS.items() if k not in sizes}
            config = dataclasses.replace(nb.config, cell=cell, output_dir=str(run_dir), **settings)
            train_and_evaluate(config, run_dir)
        run = load_run(run_dir)
        runs[cell] = dataclasses.replace(
            run, config=dataclasses.replace(run.config, data=nb.config.data)
        )
    return runs
