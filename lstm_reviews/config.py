"""Every setting of a training run, in one place, each with the reason for its default.

Each field carries its own metadata: the --help text, the allowed choices, whether a
resumed run may change it, and which caches it feeds. The command line is built from it
(lstm_reviews.options), the cache keys are derived from it (`cache_settings`), a resume
checks against it (`resume_conflicts`), and `__post_init__` validates every Config however
it is made (command line, notebook, config.json), by the rules of lstm_reviews.config_rules.
The resolved config is saved next to the weights as config.json, so a run can be read back
and repeated. A Config is frozen.
"""

from __future__ import annotations

import dataclasses
import json

from lstm_reviews.config_rules import (
    check_removed_options,
    check_values,
    option,  # noqa: F401  (the flag of a field, asked for here)
)
from lstm_reviews.errors import UserError
from lstm_reviews.presets import PRESETS

BATCH_SHAPES = ("auto", "fixed", "dynamic")
DISTRIBUTE_MODES = ("off", "data")
# The recurrent cells of --cell (lstm_reviews.model.variants.CELLS), the default first.
CELL_TYPES = ("lstm", "peephole", "coupled", "gru")
POOLING_MODES = ("max", "max_mean")
PRECISIONS = ("off", "float16", "bfloat16")
SOURCES = ("aclimdb", "tfds")
VOCABULARY_SOURCES = ("train", "train+unlabeled")
# The words of explain's word report when --words names none (inspection.word_report): two
# strong verdict words and four common ones. Here, light to import, so explain's --help
# lists them without loading Keras.
DEFAULT_WORDS = ("amazing", "awesome", "this", "give", "all", "should")
# Caches a field can feed (lstm_reviews.data.cache): a change of the field makes a new file.
TOKENS, VECTORS, LANGUAGE_MODEL = "tokens", "vectors", "language_model"
# Tokens of one review read when it is judged. IMDB's longest review fits (docs/results.md).
EVAL_MAX_LENGTH = 4096


# keyless's default: every value of the field feeds the keys.
_ALWAYS_KEYED = object()


def _field(default, help: str, *, choices=None, resumable=False, feeds=(), keyless=_ALWAYS_KEYED):
    """keyless: for a field added after caches it feeds were made, the value those caches were
    made with; at that value it stays out of the cache keys, so they remain valid."""
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "resumable": resumable,
            "feeds": tuple(feeds),
            "keyless": keyless,
        },
    )


@dataclasses.dataclass(frozen=True)
class Config:
    # Only names the bundle of defaults the run started from; the fields below hold them.
    preset: str = _field(
        "cpu",
        "a bundle of defaults: 'cpu' (the recipe measured on 2 CPU cores), 'quick' (a first "
        "result in minutes on 2 CPU cores: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in PRESETS["quick"].items())
        + ") or 'gpu' (a larger reader: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in PRESETS["gpu"].items())
        + "); options given explicitly win",
        choices=tuple(PRESETS),
        resumable=True,
    )
    # --- data ---
    # None: $LSTM_REVIEWS_DATA, Keras' cache, then download. A token cache: a machine without
    # TensorFlow or the reviews trains from the caches made where they are.
    data: str | None = _field(
        None,
        "path to an aclImdb directory or aclImdb_v1.tar.gz (default: $LSTM_REVIEWS_DATA, "
        "then ~/.keras/datasets, then download), or a token cache tokens-<hash>.npz made "
        "elsewhere, to train from its ids alone (lstm_reviews.gpu_bundle)",
        resumable=True,
        feeds=(TOKENS,),
    )
    # The archive's text files, or tensorflow-datasets' imdb_reviews.
    source: str = _field(
        "aclimdb",
        "where reviews come from: 'aclimdb' text files or 'tfds' imdb_reviews",
        choices=SOURCES,
        feeds=(TOKENS,),
    )
    # 2.5k reviews, grouped by movie: enough to pick the best epoch.
    validation_split: float = _field(
        0.1, "share of training reviews held out for validation, grouped by movie", feeds=(TOKENS,)
    )
    # Covers nearly every test token (docs/data.md); 60k measured no better (docs/results.md).
    vocab_size: int = _field(
        30000,
        "vocabulary size of the TextVectorization, padding and [UNK] included",
        feeds=(TOKENS,),
    )
    # Also the unlabeled reviews the word vectors and language model read: measured better on
    # validation than the training split alone (docs/results.md).
    vocabulary_from: str = _field(
        "train+unlabeled",
        "reviews the vocabulary's most frequent words are counted in: 'train' (the training "
        "split) or 'train+unlabeled' (also the unlabeled reviews)",
        choices=VOCABULARY_SOURCES,
        feeds=(TOKENS,),
        keyless="train",  # token caches made before the option existed counted train alone
    )
    # Most reviews whole (docs/data.md); longer ones keep their end (the verdict).
    max_length: int = _field(600, "tokens kept per review; longer reviews keep their last tokens")
    # Judged reviews are read much longer than trained ones: reading the whole review measured
    # better on validation (docs/results.md). The bound keeps every IMDB review whole and caps
    # the time and memory one pasted book or stray file can cost, wherever a review is read.
    eval_max_length: int = _field(
        EVAL_MAX_LENGTH,
        "tokens kept per review when validating, testing, exporting, explaining and "
        "predicting (its last ones, as in training): the bound on what one review can cost",
    )
    # Token ids, word vectors, language model: training runs from them without TensorFlow.
    cache_dir: str = _field(
        ".cache/lstm_reviews",
        "directory of the caches (token ids, word vectors, language model)",
        resumable=True,
    )
    # --- word vectors (lstm_reviews.data.embeddings) ---
    # Rare words arrive meaningful: "superb" starts near "excellent".
    pretrain_embeddings: bool = _field(
        True,
        "initialize the embedding with word vectors counted from the training and "
        "unlabeled reviews (lstm_reviews.data.embeddings; made once, then cached)",
        feeds=(LANGUAGE_MODEL,),
    )
    # Tokens on each side: close enough to share a topic or a phrase.
    vectors_window: int = _field(
        5, "co-occurrence window of the word vectors, in tokens on each side", feeds=(VECTORS,)
    )
    # --- language-model pretraining (lstm_reviews.training.pretrain) ---
    # 3 measured better than 1 (docs/results.md); 0 skips it.
    lm_epochs: int = _field(
        3,
        "epochs of language-model pretraining (next and previous word) of "
        "the embedding and LSTM on the training and unlabeled reviews before "
        "the sentiment training; 0 skips it (lstm_reviews.training.pretrain; made once, "
        "then cached)",
        feeds=(LANGUAGE_MODEL,),
    )
    # Context enough for a next word, short enough to batch densely.
    lm_chunk_length: int = _field(
        128, "tokens per language-model training piece", feeds=(LANGUAGE_MODEL,)
    )
    # Sampled wrong words per piece; the true word must outscore them.
    lm_negatives: int = _field(
        64, "sampled wrong words per piece in the language model's softmax", feeds=(LANGUAGE_MODEL,)
    )
    # Pieces per step: ~16k tokens, as many as a classifier batch.
    lm_batch_size: int = _field(128, "pieces per language-model step", feeds=(LANGUAGE_MODEL,))
    # Adam; cosine-decayed to 10% over the pretraining epochs.
    lm_learning_rate: float = _field(
        2e-3, "Adam learning rate of the language model", feeds=(LANGUAGE_MODEL,)
    )
    # Frozen, the LSTM's input gradient is skipped too: a cheaper pretraining step, as good on
    # validation, and the memory ledger keeps issue #13's story (docs/results.md,
    # docs/ledger.md). The sentiment training trains it anyway.
    lm_freeze_embedding: bool = _field(
        True,
        "keep the word embedding at its word vectors during language-model pretraining: a "
        "third less time a step (no gradient into the LSTM's inputs); with tied output words "
        "(--no-lm-untied-output) they stay at the vectors too; the sentiment training trains "
        "it either way. Without --pretrain-embeddings the language model always trains it",
        feeds=(LANGUAGE_MODEL,),
        keyless=False,  # language models cached before the option existed trained it
    )
    # Tied to the frozen embedding, the words the language model predicts are frozen too;
    # untied, they learn, its loss falls further and the LSTM reads better on validation, at
    # two seeds (docs/results.md). The classifier never reads them.
    lm_untied_output: bool = _field(
        True,
        "score the language model's words against output vectors of their own, started at "
        "the word vectors and trained (only during pretraining; the classifier keeps the "
        "embedding and the LSTM), instead of the embedding's (tied)",
        feeds=(LANGUAGE_MODEL,),
        keyless=False,  # language models cached before the option existed were tied
    )
    # word2vec's: frequent words are sampled less than their share.
    lm_sampling_power: float = _field(
        0.75, "wrong words are sampled by count ** this power", feeds=(LANGUAGE_MODEL,)
    )
    # --- model ---
    # 256 measured worse (docs/results.md).
    embedding_dim: int = _field(128, "size of the word embeddings", feeds=(VECTORS, LANGUAGE_MODEL))
    # Per direction, each size with its own language model: the largest reader the language
    # model's length bands (lm_batches.BUCKET_WIDTH) made affordable on 2 cores, and the best
    # measured on validation (docs/results.md).
    units: int = _field(128, "LSTM units per direction", feeds=(LANGUAGE_MODEL,))
    # The textbook's cell. On IMDB the variants measured within a point of it (docs/variants.md).
    cell: str = _field(
        "lstm",
        "the recurrent cell: 'lstm', 'peephole' (the gates also read the cell), 'coupled' "
        "(input gate = 1 - forget gate) or 'gru' (lstm_reviews.model.variants)",
        choices=CELL_TYPES,
        feeds=(LANGUAGE_MODEL,),
        keyless="lstm",  # language models cached before --cell existed are LSTMs
    )
    # The verdict can come first or last: read both ways.
    bidirectional: bool = _field(
        True, "read the review in both directions", feeds=(LANGUAGE_MODEL,)
    )
    # Before the head; 0.5 measured no better (docs/results.md).
    dropout: float = _field(0.4, "dropout rate before the sentiment head")
    # On the embeddings, one mask per review: the embedding, the largest layer, overfits first.
    input_dropout: float = _field(
        0.3,
        "dropout rate on the LSTM's inputs (the word embeddings), one mask per review",
        feeds=(LANGUAGE_MODEL,),
    )
    # Off: the input and head dropout above are what was measured.
    recurrent_dropout: float = _field(
        0.0, "dropout rate on the LSTM's recurrent state", feeds=(LANGUAGE_MODEL,)
    )
    # Max over time (the strongest phrase anywhere) beside the mean (the overall tone).
    pooling: str = _field(
        "max_mean",
        "how the LSTM outputs are pooled over time: 'max' or "
        "'max_mean' (max and mean side by side)",
        choices=POOLING_MODES,
    )
    # Miyato et al. 2017: the loss on embeddings pushed by ε up the loss gradient is added to
    # the clean loss. Their ε = 5.0 is on normalized embeddings; ours are not normalized
    # (lstm_reviews.model.adversarial): 0.5 is 5 scaled to our vectors' norm. Better on
    # validation than without (docs/results.md); it doubles a step's cost (docs/training.md).
    adversarial_epsilon: float = _field(
        0.5,
        "adversarial training on the word embeddings (Miyato et al. 2017): each step also "
        "trains on every review's embedded sequence perturbed by this L2 norm (over the whole "
        "review, padding excluded) in the direction that raises the loss most; about twice the "
        "cost of a step; 0 turns it off (lstm_reviews.model.adversarial)",
    )
    # Miyato et al. 2017's best (docs/gpu.md): the unlabeled reviews teach too. 0 (off): it
    # measured worse on this recipe (docs/results.md).
    vat_epsilon: float = _field(
        0.0,
        "virtual adversarial training (Miyato et al. 2017): each step also reads "
        "--vat-batch-size unlabeled reviews and trains the verdict on each to stay where it is "
        "under the perturbation of its embedded sequence of this L2 norm that moves it most "
        "(found by one power iteration); about 3 forward and 2 backward passes over those "
        "reviews a step; 0 turns it off (lstm_reviews.model.adversarial)",
    )
    # A quarter of a labeled batch: each unlabeled review is read three times and differentiated
    # twice, so the step's cost grows with it (docs/results.md).
    vat_batch_size: int = _field(
        16, "unlabeled reviews per training step with --vat-epsilon, after the labeled ones"
    )
    # --- training ---
    # Small enough for many steps an epoch on 2 CPU cores (docs/results.md).
    batch_size: int = _field(64, "reviews per training batch")
    # None: as the training batches, no more memory (and with dynamic shapes the evaluation
    # batches of the recipe as measured). It changes the results by float rounding at most,
    # so a resumed run may change it.
    eval_batch_size: int | None = _field(
        None,
        "reviews per validation and test batch (default: --batch-size; no effect on the "
        "results beyond float rounding)",
        resumable=True,
    )
    # The learning rate's cosine runs over these: with 3 the second epoch, at a higher rate
    # than the last of 2, measured best on validation; by the third the training reviews are
    # nearly all fitted and validation falls back (docs/results.md).
    epochs: int = _field(3, "maximum number of epochs", resumable=True)
    # Epochs without validation improvement before stopping.
    patience: int = _field(
        2, "epochs without validation improvement before early stopping", resumable=True
    )
    # With the language model and adversarial training, 1e-3 over 2 epochs matched 5e-4 over 4
    # in half the time; without them it did worse (docs/results.md).
    learning_rate: float = _field(1e-3, "Adam learning rate")
    # The last epochs fine-tune instead of overfitting.
    lr_decay: bool = _field(
        True, "decay the learning rate along a cosine to 10%% of --learning-rate over --epochs"
    )
    # Batches of similar length: far less padding to compute.
    bucket_by_length: bool = _field(True, "batch reviews of similar length together")
    # Each new batch shape is a compilation under JAX (XLA) and PyTorch: fixed shapes there.
    # TensorFlow traces with relaxed shapes, so any shape is free, and dynamic batches carry
    # the least padding (docs/data.md): the recipe as measured.
    # Not resumable: it changes the batches, and the language model's cache under "fixed".
    batch_shapes: str = _field(
        "auto",
        "'fixed': batches padded to the training split's length buckets, every batch of "
        "--batch-size rows (a short one topped up with rows of weight 0), a few shapes per "
        "run; 'dynamic': each batch padded to its longest review, a bucket's last batch "
        "short; 'auto': fixed under JAX and PyTorch, dynamic under TensorFlow",
        choices=BATCH_SHAPES,
    )
    # For GPUs (not measured: no GPU was lent): float16 compute with loss scaling, or bfloat16
    # (H100, TPU) without; the weights and the logit stay float32. Off: what was measured.
    # Old config.json files hold a bool: true meant float16.
    mixed_precision: str = _field(
        "off",
        "mixed-precision compute: 'off' (float32), 'float16' or 'bfloat16' (for GPUs); "
        "weights and the logit stay float32",
        choices=PRECISIONS,
    )
    # Several devices of one machine (GPUs, or CPU devices forced for tests) under JAX:
    # keras.distribution.DataParallel, each batch split over them (training.distribute).
    # The same steps up to float rounding, so a resumed run may change it.
    distribute: str = _field(
        "off",
        "'data': data parallelism over every local device (JAX only): the weights copied to "
        "each, each batch split between them (--batch-size must divide by the device count); "
        "'off': one device",
        choices=DISTRIBUTE_MODES,
        resumable=True,
    )
    # Weights, shuffling and the validation split all follow it.
    seed: int = _field(
        1337,
        "random seed for weights, shuffling and the validation split",
        feeds=(TOKENS, VECTORS, LANGUAGE_MODEL),
    )
    # --- outputs ---
    output_dir: str = _field(
        "runs/imdb_lstm",
        "run directory for config, history, checkpoints, metrics and vocabulary",
        resumable=True,
    )
    export_dir: str = _field(
        "saved_models/imdb_lstm", "where the SavedModel versions are written", resumable=True
    )
    resume: bool = _field(
        False, "continue the run in --output-dir from its last backup", resumable=True
    )
    export: bool = _field(
        True,
        "export the SavedModel to --export-dir after training (TensorFlow backend only)",
        resumable=True,
    )

    def __post_init__(self):
        if isinstance(self.mixed_precision, bool):  # config.json of an older version
            object.__setattr__(
                self, "mixed_precision", "float16" if self.mixed_precision else "off"
            )
        if self.eval_max_length is None:  # config.json of a version that read reviews unbounded
            object.__setattr__(self, "eval_max_length", EVAL_MAX_LENGTH)
        check_values(self)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> Config:
        """The Config of preset `name` (PRESETS), `overrides` applied on top."""
        if name not in PRESETS:
            raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], "preset": name, **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """A Config from a dict such as config.json's; keys of newer versions are ignored, and
        so are removed options at their off value (REMOVED_OPTIONS). UserError if an old run
        used one: this version cannot rebuild or continue what it trained."""
        check_removed_options(values)
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def cache_settings(config: Config, cache: str) -> dict:
    """{field: value} of the fields that feed `cache` (TOKENS, VECTORS or LANGUAGE_MODEL),
    but for those at their `keyless` value (see _field)."""
    return {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if cache in field.metadata["feeds"]
        and (
            field.metadata["keyless"] is _ALWAYS_KEYED
            or getattr(config, field.name) != field.metadata["keyless"]
        )
    }


def resume_conflicts(saved: Config, requested: Config) -> list:
    """The fields a resumed run may not change that differ between two configs."""
    return [
        field.name
        for field in dataclasses.fields(Config)
        if not field.metadata["resumable"]
        and getattr(saved, field.name) != getattr(requested, field.name)
    ]
