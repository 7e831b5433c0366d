import json

import pytest

from lstm_reviews.config import Config
from lstm_reviews.errors import UserError
from lstm_reviews.options import build_parser, config_from_args
from lstm_reviews.rundir import RunDir


def test_every_field_has_an_option_shown_in_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for name in Config.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text


def test_args_override_defaults_and_round_trip_through_json(tmp_path):
    config = config_from_args(["--units", "8", "--no-bidirectional", "--dropout", "0.1"])
    assert (config.units, config.bidirectional, config.dropout) == (8, False, 0.1)
    RunDir(tmp_path).write_config(config)
    assert json.loads((tmp_path / "config.json").read_text())["units"] == 8
    assert RunDir(tmp_path).read_config() == config


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--units", "0"], "--units must be positive, got 0"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
        (["--validation-split", "0"], "--validation-split must be in (0, 1)"),
        (["--vocab-size", "2"], "--vocab-size must leave room for padding, [UNK] and a word"),
        (["--patience", "-1"], "--patience must be >= 0, got -1"),
        (["--learning-rate", "nan"], "--learning-rate must be positive, got nan"),
        (["--vat-epsilon", "inf"], "--vat-epsilon must be a finite number >= 0, got inf"),
        (["--source", "csv"], "invalid choice: 'csv'"),
        (["--mixed-precision", "float8"], "invalid choice: 'float8'"),
    ],
)
def test_bad_values_exit_2_with_the_value_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_mixed_precision_is_a_choice_and_an_old_bool_still_reads(tmp_path):
    assert config_from_args(["--mixed-precision", "bfloat16"]).mixed_precision == "bfloat16"
    assert Config().mixed_precision == "off"
    # config.json files of older versions hold a bool: true meant float16.
    for old, new in ((True, "float16"), (False, "off")):
        (tmp_path / "config.json").write_text(json.dumps({"units": 8, "mixed_precision": old}))
        assert RunDir(tmp_path).read_config().mixed_precision == new
    assert Config(mixed_precision=True) == Config(mixed_precision="float16")


@pytest.mark.slow
def test_batch_shapes_is_a_choice_that_feeds_no_cache_and_is_not_resumable():
    from lstm_reviews.config import LANGUAGE_MODEL, TOKENS, VECTORS, cache_settings

    assert Config().batch_shapes == "auto"
    assert config_from_args(["--batch-shapes", "fixed"]).batch_shapes == "fixed"
    with pytest.raises(UserError, match="--batch-shapes must be one of auto, fixed, dynamic"):
        Config(batch_shapes="static")
    field = Config.__dataclass_fields__["batch_shapes"]
    assert not field.metadata["resumable"] and field.metadata["feeds"] == ()
    # The language model's cache follows what it resolves to (pretrain.reader_settings).
    for cache in (TOKENS, VECTORS, LANGUAGE_MODEL):
        assert "batch_shapes" not in cache_settings(Config(), cache)


def test_eval_batch_size_is_positive_and_resumable():
    assert config_from_args(["--eval-batch-size", "256"]).eval_batch_size == 256
    assert config_from_args([]).eval_batch_size is None  # None: --batch-size
    assert Config.__dataclass_fields__["eval_batch_size"].metadata["resumable"]
    with pytest.raises(UserError, match="--eval-batch-size must be positive"):
        Config(eval_batch_size=0)


def test_cell_keys_the_language_model_but_leaves_the_lstm_caches_valid():
    from lstm_reviews.config import LANGUAGE_MODEL, TOKENS, VECTORS, cache_settings

    assert config_from_args(["--cell", "gru"]).cell == "gru"
    with pytest.raises(UserError, match="--cell must be one of lstm, peephole, coupled, gru"):
        Config(cell="rnn")
    assert not Config.__dataclass_fields__["cell"].metadata["resumable"]
    # Another cell, another language model; the LSTM's key is what it was before --cell.
    assert cache_settings(Config(cell="gru"), LANGUAGE_MODEL)["cell"] == "gru"
    assert "cell" not in cache_settings(Config(), LANGUAGE_MODEL)
    assert cache_settings(Config(cell="coupled"), LANGUAGE_MODEL) != cache_settings(
        Config(), LANGUAGE_MODEL
    )
    for cache in (TOKENS, VECTORS):
        assert cache_settings(Config(cell="gru"), cache) == cache_settings(Config(), cache)


def test_adversarial_epsilon_defaults_to_the_recipe_and_refuses_negative_or_nan(capsys):
    assert Config().adversarial_epsilon == 0.5
    assert config_from_args(["--adversarial-epsilon", "0"]).adversarial_epsilon == 0.0
    assert config_from_args(["--adversarial-epsilon", "5"]).adversarial_epsilon == 5.0
    for bad in ("-0.5", "nan", "inf"):
        with pytest.raises(SystemExit) as exit_info:
            config_from_args(["--adversarial-epsilon", bad])
        assert exit_info.value.code == 2
        assert f"--adversarial-epsilon must be a finite number >= 0, got {float(bad)!r}" in (
            capsys.readouterr().err
        )
    build_parser().print_help()
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps by terminal width
    assert "--adversarial-epsilon ADVERSARIAL_EPSILON adversarial training on the word" in help_text


def test_fields_at_none_still_feed_the_keys():
    """--data's default None is a value of the key like any other (only 'keyless' ones drop)."""
    from lstm_reviews.config import TOKENS, cache_settings

    assert cache_settings(Config(data=None), TOKENS)["data"] is None


@pytest.mark.parametrize("removed", ["--ema-momentum", "--layer-lr-decay"])
def test_removed_options_are_no_longer_options(removed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_from_args([removed, "0.5"])
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {removed}" in capsys.readouterr().err


def test_an_old_config_naming_removed_options_at_their_off_value_loads(tmp_path):
    # Runs of versions that had --ema-momentum and --layer-lr-decay wrote them, off by default.
    old = {"units": 8, "ema_momentum": 0.0, "layer_lr_decay": 1.0}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert RunDir(tmp_path).read_config() == Config(units=8)


@pytest.mark.parametrize("name, value", [("ema_momentum", 0.995), ("layer_lr_decay", 0.5)])
def test_an_old_config_that_used_a_removed_option_is_refused_by_name(name, value, tmp_path):
    # Its model was trained with an optimizer this version no longer builds.
    (tmp_path / "config.json").write_text(json.dumps({"units": 8, name: value}))
    flag = "--" + name.replace("_", "-")
    with pytest.raises(UserError, match=f"trained with {flag} {value}, an option this version"):
        RunDir(tmp_path).read_config()
