"""Trains the IMDB sentiment LSTM: `python -m lstm_reviews.train --help`.

The command: its options (lstm_reviews.options, one per Config field), then
training.run.train_and_evaluate, which trains, evaluates and exports a run crash-safely
(a kill at any moment, then --resume, ends as the uninterrupted run would).
"""

from __future__ import annotations

import sys
import types

from lstm_reviews.config import Config
from lstm_reviews.data import tokens
from lstm_reviews.errors import run_command
from lstm_reviews.options import config_from_args
from lstm_reviews.training.run import interrupted_message, train_and_evaluate


def main(argv=None) -> int:
    """CLI entry: exit 0 on success, 2 on a user mistake, 130 on Ctrl-C, 1 on a bug."""
    config = config_from_args(
        argv, description="Train the IMDB sentiment LSTM.", prog="python -m lstm_reviews.train"
    )

    def body():
        tokens.check_data_path(config)  # before Keras: a wrong path answers at once
        train_and_evaluate(config)

    outputs = {"--output-dir": config.output_dir, "--cache-dir": config.cache_dir}
    if config.export:
        outputs["--export-dir"] = config.export_dir
    return run_command(body, on_interrupt=lambda: interrupted_message(config), outputs=outputs)


class _CallableModule(types.ModuleType):
    """lstm_reviews.train(config, run_dir) is the API's train (lstm_reviews.api.train). The
    package's attribute `train` cannot simply be that function: once this command module is
    imported (`python -m lstm_reviews.train`, `from lstm_reviews import train`), Python binds
    the submodule to that attribute, so the module itself must answer the call."""

    def __call__(self, config: Config | None = None, run_dir=None):
        from lstm_reviews.api import train  # on use: the API loads predict and serving

        return train(config, run_dir)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
