"""Every setting of a training run, in one place, each with the reason for its default.

Each field carries its own metadata: the --help text, the allowed choices, whether a
resumed run may change it, and which caches it feeds. The command line is built from it
(`build_parser`), the cache keys are derived from it (`cache_settings`), a resume checks
against it (`resume_conflicts`), and `__post_init__` validates every Config however it is
made (command line, notebook, config.json). The resolved config is saved next to the
weights as config.json, so a run can be read back and repeated. A Config is frozen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from lstm_reviews.errors import UserError

BATCH_SHAPES = ("auto", "fixed", "dynamic")
DISTRIBUTE_MODES = ("off", "data")
# The recurrent cells of --cell (lstm_reviews.model.variants.CELLS), the default first.
CELL_TYPES = ("lstm", "peephole", "coupled", "gru")
POOLING_MODES = ("max", "max_mean")
PRECISIONS = ("off", "float16", "bfloat16")
SOURCES = ("aclimdb", "tfds")
VOCABULARY_SOURCES = ("train", "train+unlabeled")
# --preset: bundles of defaults. "cpu" is the fields' own defaults, the recipe measured on 2
# CPU cores. "gpu" scales the reader toward the LM-pretrained LSTMs of the literature (Dai & Le
# 2015; Miyato et al. 2017: 1024 units, 256-d embeddings, long pretraining), for one GPU; it
# has only been run scaled down on a CPU (docs/gpu.md). "quick": a first result in minutes
# on 2 CPU cores, from the archive and an empty cache. Options given explicitly win.
PRESETS = {
    "cpu": {},
    # Its accuracy and time: docs/results.md, "A first result in minutes".
    "quick": {
        # No language-model pretraining: the recipe's largest cost by far. The word vectors
        # (--pretrain-embeddings, on) stay: a one-epoch reader needs its words to start
        # meaningful, and they cost far less than the language model.
        "lm_epochs": 0,
        # Adversarial steps cost twice a plain one.
        "adversarial_epsilon": 0.0,
        # Half the recipe's units: a cheaper step.
        "units": 64,
        # The last 256 tokens of each review in training (about the median review whole):
        # long reviews are where the steps' time goes.
        "max_length": 256,
        # Judging the 27,500 validation and test reviews whole (the longest thousands of
        # tokens) costs as much as the training; the last 400 hold most reviews whole.
        "eval_max_length": 400,
        # One pass, the learning rate's cosine over it (enough: docs/results.md).
        "epochs": 1,
    },
    "gpu": {
        "vocab_size": 60000,
        "vocabulary_from": "train+unlabeled",
        "embedding_dim": 256,
        "units": 512,
        "lm_epochs": 10,
        "lm_batch_size": 256,
        "lm_negatives": 512,
        "lm_learning_rate": 1e-3,
        "input_dropout": 0.5,
        "dropout": 0.5,
        "adversarial_epsilon": 0.5,
        "epochs": 6,
        "mixed_precision": "bfloat16",
    },
}
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
    # Covers 97.7% of the test tokens; 60k measured no better (88.74% vs 88.70%).
    vocab_size: int = _field(
        30000,
        "vocabulary size of the TextVectorization, padding and [UNK] included",
        feeds=(TOKENS,),
    )
    # Which reviews choose the vocabulary's words (the most frequent): the labeled training
    # split alone, or also the 50k unlabeled reviews the word vectors and language model read.
    # Measured without the language model: validation 88.90% against 88.66% (docs/results.md).
    vocabulary_from: str = _field(
        "train+unlabeled",
        "reviews the vocabulary's most frequent words are counted in: 'train' (the training "
        "split) or 'train+unlabeled' (also the unlabeled reviews)",
        choices=VOCABULARY_SOURCES,
        feeds=(TOKENS,),
        keyless="train",  # token caches made before the option existed counted train alone
    )
    # 95% of reviews whole (p90: 462 tokens); longer ones keep their end (the verdict).
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
    # 90.15% test with 3 epochs; 1 epoch: 89.70%; 0 skips it.
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
    # Frozen, the LSTM's input gradient is skipped too: a pretraining step takes a third less
    # time. At 128 units: validation 90.62% against 90.66% trained (one review), and the only
    # one of the runs with length bands whose memory ledger keeps issue #13's story (smallest
    # ratio 2.71x against 1.67x; docs/ledger.md). The sentiment training trains it anyway.
    lm_freeze_embedding: bool = _field(
        True,
        "keep the word embedding at its word vectors during language-model pretraining: a "
        "third less time a step (no gradient into the LSTM's inputs); with tied output words "
        "(--no-lm-untied-output) they stay at the vectors too; the sentiment training trains "
        "it either way. Without --pretrain-embeddings the language model always trains it",
        feeds=(LANGUAGE_MODEL,),
        keyless=False,  # language models cached before the option existed trained it
    )
    # Tied to the frozen embedding, the words the language model predicts are frozen too (its
    # loss ended at 6.00); untied, they learn (5.28 after 3 epochs), the LSTM reads better:
    # validation 91.14% against 90.74% tied (test 91.73% against 91.48%); at seed 1 90.93%
    # against 90.49% (docs/results.md). The classifier never reads them.
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
    # 256 measured worse (88.1% against 88.7% test, with a 60k vocabulary).
    embedding_dim: int = _field(128, "size of the word embeddings", feeds=(VECTORS, LANGUAGE_MODEL))
    # Per direction, each size with its own language model. 96 against 64: validation 90.66%
    # against 90.42%. With the language model's length bands (pretrain.BUCKET_WIDTH) and
    # --lm-freeze-embedding, 128 units: 90.62% over 2 epochs, 90.74% over 3 (31.0 min cold on
    # 2 cores; docs/results.md).
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
    # Before the head; 0.5 (with input dropout 0.5) measured no better: 87.4% test.
    dropout: float = _field(0.4, "dropout rate before the sentiment head")
    # On the embeddings, one mask per review: the 3.8M-weight embedding overfits first.
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
    # (lstm_reviews.model.adversarial): 0.5 is 5 scaled to our vectors' norm. Validation 89.94%
    # against 89.50% without it; it doubles the sentiment training's cost (docs/training.md).
    adversarial_epsilon: float = _field(
        0.5,
        "adversarial training on the word embeddings (Miyato et al. 2017): each step also "
        "trains on every review's embedded sequence perturbed by this L2 norm (over the whole "
        "review, padding excluded) in the direction that raises the loss most; about twice the "
        "cost of a step; 0 turns it off (lstm_reviews.model.adversarial)",
    )
    # Miyato et al. 2017's best (94.09% at 1,024 units, against 93.79% adversarial): the
    # unlabeled reviews teach too. 0 (off): what the recipe was measured without.
    vat_epsilon: float = _field(
        0.0,
        "virtual adversarial training (Miyato et al. 2017): each step also reads "
        "--vat-batch-size unlabeled reviews and trains the verdict on each to stay where it is "
        "under the perturbation of its embedded sequence of this L2 norm that moves it most "
        "(found by one power iteration); about 3 forward and 2 backward passes over those "
        "reviews a step; 0 turns it off (lstm_reviews.model.adversarial)",
    )
    # A quarter of a labeled batch: each unlabeled review is read three times and differentiated
    # twice; 16 made the default's steps 30% slower (981 s against 753 s on 2 cores).
    vat_batch_size: int = _field(
        16, "unlabeled reviews per training step with --vat-epsilon, after the labeled ones"
    )
    # Polyak averaging: the weights evaluated, kept and exported are the optimizer's moving
    # average of the trained ones (horizon ~1/(1 - momentum) steps); 0 turns it off.
    ema_momentum: float = _field(
        0.0,
        "evaluate, keep and export the exponential moving average of the weights, updated "
        "every step with this momentum (Keras' use_ema; e.g. 0.995: about the last 200 "
        "steps); 0 turns it off",
    )
    # Howard & Ruder 2018 (ULMFiT)'s discriminative fine-tuning: the pretrained layers lower
    # down change less, so the sentiment training does not overwrite what the language model
    # taught them. 1 (off): every layer at --learning-rate, as measured before it existed.
    layer_lr_decay: float = _field(
        1.0,
        "layer-wise learning-rate decay: the LSTM learns at this factor times --learning-rate "
        "and the embedding below it at its square, the head at --learning-rate "
        "(discriminative fine-tuning, Howard & Ruder 2018: 1/2.6 = 0.38 per layer); 1 turns "
        "it off",
    )
    # --- training ---
    # ~360 steps per epoch, 0.3 s each on 2 CPU cores.
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
    # than the last of 2, measured best (validation 90.74% against 90.62% over 2 at 128
    # units; the third epoch fits 95% of the training reviews and validation falls back).
    epochs: int = _field(3, "maximum number of epochs", resumable=True)
    # Epochs without validation improvement before stopping.
    patience: int = _field(
        2, "epochs without validation improvement before early stopping", resumable=True
    )
    # With 3 pretraining epochs and adversarial training, 1e-3 over 2 epochs matched 5e-4 over
    # 4 (validation 90.42% against 90.38%) in half the time (docs/results.md). (After 1 LM epoch and
    # without adversarial training, 1e-3 did worse: 88.94% against 89.70% test.)
    learning_rate: float = _field(1e-3, "Adam learning rate")
    # The last epochs fine-tune instead of overfitting.
    lr_decay: bool = _field(
        True, "decay the learning rate along a cosine to 10%% of --learning-rate over --epochs"
    )
    # Batches of similar length: far less padding to compute.
    bucket_by_length: bool = _field(True, "batch reviews of similar length together")
    # Each new batch shape is a compilation under JAX (XLA) and PyTorch: fixed shapes there.
    # TensorFlow traces with relaxed shapes, so any shape is free, and dynamic batches carry
    # the least padding (6.8% of IMDB's positions against 8.5%): the recipe as measured.
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
        positive = (
            "vocab_size",
            "max_length",
            "eval_max_length",
            "embedding_dim",
            "units",
            "batch_size",
            "eval_batch_size",
            "epochs",
            "vectors_window",
            "lm_chunk_length",
            "lm_negatives",
            "lm_batch_size",
            "vat_batch_size",
        )
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UserError(f"{option(name)} must be positive, got {getattr(self, name)!r}")
        for name in ("dropout", "input_dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"{option(name)} must be in [0, 1), got {getattr(self, name)!r}")
        if not 0.0 < self.validation_split < 1.0:
            raise UserError(f"--validation-split must be in (0, 1), got {self.validation_split!r}")
        if self.vocab_size < 3:
            raise UserError(
                f"--vocab-size must leave room for padding, [UNK] and a word, "
                f"got {self.vocab_size!r}"
            )
        for name in ("learning_rate", "lm_learning_rate", "lm_sampling_power"):
            if getattr(self, name) <= 0:
                raise UserError(f"{option(name)} must be positive, got {getattr(self, name)!r}")
        for name in ("lm_epochs", "patience"):
            if getattr(self, name) < 0:
                raise UserError(f"{option(name)} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise UserError(f"--layer-lr-decay must be in (0, 1], got {self.layer_lr_decay!r}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise UserError(f"--ema-momentum must be in [0, 1), got {self.ema_momentum!r}")
        # `not >= 0` also refuses NaN; inf would give inf perturbations.
        for name in ("adversarial_epsilon", "vat_epsilon"):
            if not 0.0 <= getattr(self, name) < float("inf"):
                raise UserError(
                    f"{option(name)} must be a finite number >= 0, got {getattr(self, name)!r}"
                )
        for field in dataclasses.fields(self):
            choices = field.metadata["choices"]
            if choices and getattr(self, field.name) not in choices:
                raise UserError(
                    f"{option(field.name)} must be one of {', '.join(choices)}, "
                    f"got {getattr(self, field.name)!r}"
                )

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
        """A Config from a dict such as config.json's; keys of newer versions are ignored."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def option(name: str) -> str:
    """The command-line flag of a field: vocab_size -> --vocab-size."""
    return "--" + name.replace("_", "-")


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


def build_parser(description: str = "", prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one option per Config field, defaults shown in --help."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for field in dataclasses.fields(Config):
        help_text = field.metadata["help"]
        if isinstance(field.default, bool):
            parser.add_argument(
                option(field.name),
                action=argparse.BooleanOptionalAction,
                default=field.default,
                help=help_text,
            )
        else:
            # A default of None: the annotation says ("int | None").
            value_type = {int: int, float: float}.get(
                type(field.default), int if str(field.type).startswith("int") else str
            )
            parser.add_argument(
                option(field.name),
                type=value_type,
                default=field.default,
                metavar=field.name.upper(),
                choices=field.metadata["choices"],
                help=help_text,
            )
    return parser


def apply_preset(parser: argparse.ArgumentParser, argv=None) -> None:
    """Makes the --preset that argv names the parser's defaults (before parsing it), so the
    options argv gives explicitly override the preset's values."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    known, _ = peek.parse_known_args(argv)
    parser.set_defaults(**PRESETS[known.preset])


def config_from_args(argv=None, description: str = "", prog: str | None = None) -> Config:
    """Parses argv into a validated Config; a bad value exits with argparse's message (exit 2)."""
    parser = build_parser(description, prog)
    apply_preset(parser, argv)
    args = parser.parse_args(argv)
    try:
        return Config(**vars(args))
    except UserError as error:
        parser.error(str(error))
