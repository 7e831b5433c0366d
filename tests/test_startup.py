"""Every command starts light and quiet (lstm_reviews.startup), and the `lstm-reviews` script.

Light: --help and option or path mistakes answer without importing TensorFlow, Keras, JAX or
matplotlib (asserted on sys.modules, not on time: CI machines are loaded; the times are
printed). Quiet: no TensorFlow, absl, CUDA or Keras lines on standard error, with
TF_CPP_MIN_LOG_LEVEL unset.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_run_dir

from lstm_reviews import commands, startup
from lstm_reviews.config import Config
from lstm_reviews.options import build_parser, config_from_args

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "jax", "matplotlib", "torch")

# Calls a module's main with argv, then reports its exit code and the heavy modules loaded.
RUNNER = f"""
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
try:
    code = module.main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
heavy = [name for name in {HEAVY!r} if name in sys.modules]
print("RESULT " + json.dumps({{"code": code, "heavy": heavy}}))
"""


def _environment(**changes) -> dict:
    """This checkout first on the path; TF_CPP_MIN_LOG_LEVEL unset unless given."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env.update(changes)
    return env


def _run_main(module: str, *argv: str, cwd: Path) -> tuple[dict, str, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, module, *argv],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env=_environment(),
    )
    seconds = time.perf_counter() - started
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT ") :]), result.stderr, seconds


MISTAKES = [
    ("lstm_reviews.train", ["--bogus"]),
    ("lstm_reviews.train", ["--units", "0"]),
    ("lstm_reviews.train", ["--data", "{missing}", "--output-dir", "{tmp}/run"]),
    ("lstm_reviews.train", ["--output-dir", "{file}"]),
    ("lstm_reviews.export", ["--bogus"]),
    ("lstm_reviews.export", ["{missing}"]),
    ("lstm_reviews.predict", ["--bogus"]),
    ("lstm_reviews.predict", ["--model", "{missing}", "a review"]),
    ("lstm_reviews.explain", ["--bogus"]),
    ("lstm_reviews.explain", ["--model", "{missing}", "a review"]),
    ("lstm_reviews.gpu_bundle", ["--bogus"]),
    ("lstm_reviews.gpu_bundle", ["{tmp}/bundle", "--data", "{missing}"]),
    ("lstm_reviews.commands", ["trian"]),
    ("lstm_reviews.commands", ["train", "--bogus"]),
]
HELPS = [
    (module, ["--help"])
    for module in (
        "lstm_reviews.train",
        "lstm_reviews.export",
        "lstm_reviews.predict",
        "lstm_reviews.explain",
        "lstm_reviews.gpu_bundle",
        "lstm_reviews.commands",
    )
] + [("lstm_reviews.commands", ["predict", "--help"])]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "argv"), HELPS + MISTAKES)
def test_help_and_mistakes_answer_without_tensorflow(module, argv, tmp_path):
    (tmp_path / "a-file").write_text("not a directory\n")
    values = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path)}
    values["file"] = str(tmp_path / "a-file")
    argv = [arg.format(**values) for arg in argv]
    result, stderr, seconds = _run_main(module, *argv, cwd=tmp_path)
    print(f"{module} {' '.join(argv)}: {seconds:.2f} s")
    assert result["heavy"] == [], stderr[-2000:]
    if argv[-1] == "--help":
        assert result["code"] == 0
    else:
        assert result["code"] == 2
        assert "error:" in stderr.splitlines()[-1]


# The project's own lines on standard error: errors, warnings, Keras' progress bar (carriage
# returns between its updates), and the messages train and predict print there.
_OWN_LINE = re.compile(r"^(error: |warning: |usage: |\s*$|\s*\d+/(\d+|Unknown)\b|Epoch \d+/\d+)")


def _foreign_lines(stderr: str) -> list:
    lines = [piece for line in stderr.splitlines() for piece in line.split("\r")]
    return [line for line in lines if not _OWN_LINE.match(line)]


def _command(module: str, *argv: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        env=_environment(**env),
    )


@pytest.mark.slow
def test_train_export_and_predict_print_only_their_own_lines(tiny_imdb, tmp_path):
    """With TF_CPP_MIN_LOG_LEVEL unset: no "Could not find cuda drivers", "This TensorFlow
    binary is optimized", "All log messages before absl::InitializeLog()", cuInit, Keras'
    "Your input ran out of data"... on standard error."""
    run = tmp_path / "run"
    trained = _command(
        "lstm_reviews.train",
        "--data",
        str(tiny_imdb),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(run),
        "--export-dir",
        str(tmp_path / "models"),
        # The quick preset end to end, scaled down to the tiny reviews.
        *("--preset", "quick", "--vocab-size", "50", "--max-length", "40"),
        *("--embedding-dim", "8", "--units", "4", "--batch-size", "8"),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert _foreign_lines(trained.stderr) == [], trained.stderr[-3000:]
    assert "/step - accuracy:" in trained.stdout  # Keras' progress bar stays
    assert "SavedModel exported to" in trained.stdout
    saved = json.loads((run / "config.json").read_text())
    assert (saved["preset"], saved["lm_epochs"], saved["epochs"]) == ("quick", 0, 1)
    predicted = _command(
        "lstm_reviews.predict", "--model", str(tmp_path / "models"), "A fine film.", cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert _foreign_lines(predicted.stderr) == [], predicted.stderr[-3000:]
    assert "probability" in json.loads(predicted.stdout.splitlines()[0])
    explained = _command(
        "lstm_reviews.explain", "--model", str(run), "A fine film, a fine cast.", cwd=tmp_path
    )
    assert explained.returncode == 0, explained.stderr[-3000:]
    assert _foreign_lines(explained.stderr) == [], explained.stderr[-3000:]


def test_quick_preset_resolves_to_a_light_recipe():
    """--preset quick: no language model, no adversarial steps, one epoch over shorter reviews;
    the default stays the full recipe, and options given explicitly win."""
    quick = config_from_args(["--preset", "quick"])
    assert quick == Config.from_preset("quick")
    assert (quick.lm_epochs, quick.adversarial_epsilon, quick.epochs) == (0, 0.0, 1)
    assert (quick.units, quick.max_length, quick.eval_max_length) == (64, 256, 400)
    assert quick.pretrain_embeddings and quick.vocab_size == Config().vocab_size
    default = config_from_args([])
    assert (default.preset, default.lm_epochs, default.epochs) == ("cpu", 3, 3)
    assert default.adversarial_epsilon > 0
    assert config_from_args(["--preset", "quick", "--epochs", "2"]).epochs == 2
    assert "'quick'" in build_parser().format_help()


@pytest.mark.slow
def test_a_users_log_level_is_kept(tmp_path):
    """TF_CPP_MIN_LOG_LEVEL=0 asks for TensorFlow's lines: they are not filtered."""
    write_run_dir(tmp_path / "run")
    result = _command(
        "lstm_reviews.export",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path / "models"),
        cwd=tmp_path,
        TF_CPP_MIN_LOG_LEVEL="0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _foreign_lines(result.stderr), "TensorFlow logs at start-up on any machine"


@pytest.mark.parametrize(
    ("line", "level", "dropped"),
    [
        ("WARNING: All log messages before absl::InitializeLog() is called are written", 3, 1),
        ("I0000 00:00:1796296785.577758   17703 cudart_stub.cc:31] Could not find cuda", 3, 1),
        ("I0000 00:00:1796296785.931466   17703 cpu_feature_guard.cc:227] This TensorFlow", 1, 1),
        ("To enable the following instructions: AVX2 FMA, in other operations, rebuild", 3, 1),
        ("E0000 00:00:1796296804.181424   17703 cuda_platform.cc:52] failed call to cuInit", 3, 1),
        ("E0000 00:00:1796296804.181424   17703 cuda_platform.cc:52] failed call to cuInit", 2, 0),
        ("F0000 00:00:1796296804.181424   17703 some_file.cc:52] a fatal error", 3, 0),
        ("I0000 00:00:1796296785.577758   17703 cudart_stub.cc:31] Could not find cuda", 0, 0),
        ("error: --data x: does not exist", 3, 0),
        ("Traceback (most recent call last):", 3, 0),
    ],
)
def test_start_up_lines_below_the_level_are_dropped(line, level, dropped):
    assert startup.is_dropped(line, level) == bool(dropped)


def test_dispatcher_runs_each_commands_main(monkeypatch, capsys):
    seen = {}
    for name, (module_name, _) in commands.COMMANDS.items():
        module = __import__(module_name, fromlist=["main"])
        monkeypatch.setattr(module, "main", lambda argv, name=name: seen.setdefault(name, argv))
    for name in commands.COMMANDS:
        commands.main([name, "--flag", "value"])
    assert seen == {name: ["--flag", "value"] for name in commands.COMMANDS}
    assert commands.main(["--help"]) == 0
    listing = capsys.readouterr().out
    names = ("train", "export", "predict", "explain", "gpu-bundle", "score")
    assert all(name in listing for name in names)
    assert commands.main([]) == 2
    assert commands.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_dispatcher_passes_the_exit_code_of_a_real_command(capsys):
    with pytest.raises(SystemExit) as exit:  # argparse's own exit, as under python -m
        commands.main(["train", "--units", "0"])
    assert exit.value.code == 2
    assert commands.main(["predict", "--model", "/nonexistent/model", "a review"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_pyproject_declares_the_console_script():
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # 3.10: the line itself, under its table
        section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
        scripts = dict(re.findall(r'^([\w-]+) = "([^"]+)"', section, re.MULTILINE))
    else:
        scripts = tomllib.loads(text)["project"]["scripts"]
    assert scripts["lstm-reviews"] == "lstm_reviews.commands:main"
    module, function = scripts["lstm-reviews"].split(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
