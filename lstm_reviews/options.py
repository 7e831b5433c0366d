"""The command line of a Config: one option per field (its help, choices and default from the
field's metadata), --preset applied as the defaults, argv parsed into a validated Config."""

from __future__ import annotations

import argparse
import dataclasses

from lstm_reviews.config import Config, option
from lstm_reviews.errors import UserError
from lstm_reviews.presets import PRESETS


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
