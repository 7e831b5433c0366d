import json

import pytest

from lstm_reviews.config import Config, build_parser, config_from_args
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
        (["--source", "csv"], "invalid choice: 'csv'"),
    ],
)
def test_bad_values_exit_2_with_the_value_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
