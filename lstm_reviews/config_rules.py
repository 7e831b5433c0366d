"""What values a Config accepts (Config.__post_init__ and Config.from_dict ask here): each
field's range, the choices its metadata names, and the removed options an old run's
config.json may still name. Each refusal is a UserError naming the option."""

from __future__ import annotations

import dataclasses

from lstm_reviews.errors import UserError

# Options tried and removed (docs/results.md has what they measured), at the value that
# turned them off: an old run's config.json that names them at that value loads as before.
REMOVED_OPTIONS = {"ema_momentum": 0.0, "layer_lr_decay": 1.0}

# (fields, allowed(value), the rule in "--x must <rule>"), checked in order by __post_init__.
# A field's None (eval_batch_size: as --batch-size) is always allowed.
_COUNTS = """vocab_size max_length eval_max_length embedding_dim units batch_size eval_batch_size
    epochs vectors_window lm_chunk_length lm_negatives lm_batch_size vat_batch_size""".split()
_VALUE_RULES = (
    (_COUNTS, lambda x: x > 0, "be positive"),
    ("dropout input_dropout recurrent_dropout".split(), lambda x: 0 <= x < 1, "be in [0, 1)"),
    (["validation_split"], lambda x: 0 < x < 1, "be in (0, 1)"),
    (["vocab_size"], lambda x: x >= 3, "leave room for padding, [UNK] and a word"),
    ("learning_rate lm_learning_rate lm_sampling_power".split(), lambda x: x > 0, "be positive"),
    (["lm_epochs", "patience"], lambda x: x >= 0, "be >= 0"),
    # Every rule refuses NaN (its comparisons are false); inf would give inf perturbations.
    (
        ["adversarial_epsilon", "vat_epsilon"],
        lambda x: 0 <= x < float("inf"),
        "be a finite number >= 0",
    ),
)


def option(name: str) -> str:
    """The command-line flag of a field: vocab_size -> --vocab-size."""
    return "--" + name.replace("_", "-")


def check_values(config) -> None:
    """UserError naming the first field of `config` out of its range (_VALUE_RULES, in order)
    or not one of its choices."""
    for names, allowed, rule in _VALUE_RULES:
        for name in names:
            value = getattr(config, name)
            if value is not None and not allowed(value):
                raise UserError(f"{option(name)} must {rule}, got {value!r}")
    for field in dataclasses.fields(config):
        choices = field.metadata["choices"]
        if choices and getattr(config, field.name) not in choices:
            raise UserError(
                f"{option(field.name)} must be one of {', '.join(choices)}, "
                f"got {getattr(config, field.name)!r}"
            )


def check_removed_options(values: dict) -> None:
    """UserError if `values` (config.json's) names a removed option at another value than
    the one that turned it off: this version cannot rebuild or continue what it trained."""
    for name, off in REMOVED_OPTIONS.items():
        if name in values and values[name] != off:
            raise UserError(
                f"this run was trained with {option(name)} {values[name]!r}, an option this "
                f"version no longer has (docs/results.md: it did not help); train it again, or "
                f"use a version before its removal"
            )
