"""SavedModel export: TF Serving layout, atomic versions, raw strings in, same numbers as Keras."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import keras_probabilities, write_run_dir

from lstm_reviews import export
from lstm_reviews.rundir import RunDir
from lstm_reviews.serving import versions

REPO = Path(__file__).resolve().parents[1]
LONG_START = "wonderful brilliant loved amazing superb great " * 4
LONG_END = "awful worst boring dull terrible hated plot ending " * 3
REVIEWS = [
    "A wonderful film, the actors were brilliant and I loved the story.",
    "Awful plot. The worst movie of the year, boring and dull.",
    LONG_START + LONG_END,  # 48 tokens > eval_max_length 12: only the ending may count
    LONG_END.split(" ", 12)[-1],  # that ending alone (its last 12 tokens)
    "<p>Great <b>movie</b></p><br /><br />The ENDING was GREAT!!",
    "素晴らしい映画 отличный фильм 😀 great",
    "",
    "   \t ",
]


@pytest.fixture(scope="module")
def exported(tiny_export):
    """(run_dir, model_dir, version_dir): one tiny run, exported once (conftest.py)."""
    return tiny_export


def _python(*args, cwd, env=None, input=None):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_version_layout(exported):
    _, model_dir, version = exported
    assert version == model_dir / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    info = json.loads((version / "assets.extra" / "export.json").read_text())
    assert info["input"] == "reviews" and info["config"]["max_length"] == 12
    # Readable like any directory made here (a 0700 temp dir would hide it from other users).
    assert version.stat().st_mode & 0o777 == model_dir.stat().st_mode & 0o777
    # Only the published version is visible: no staging directory is left behind.
    assert sorted(path.name for path in model_dir.iterdir()) == ["1"]


# The loader script runs with -I (no PYTHONPATH, no user site) from a temp dir, and takes
# away the editable install's finder and the checkout's paths: lstm_reviews is unreachable.
FRESH_PROCESS = r"""
import json, os, sys
repo = os.path.realpath(sys.argv[3])
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
# Only the checkout itself: a virtual environment may live inside it (CI's .venv).
sys.path[:] = [p for p in sys.path
               if "__editable__" not in p and os.path.realpath(p or ".") != repo]
try:
    import lstm_reviews
except ImportError:
    pass
else:
    sys.exit("lstm_reviews is still importable from " + str(lstm_reviews.__file__))
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
signature = loaded.signatures["serving_default"]
texts = [text.encode("utf-8") for text in json.loads(sys.argv[2])] + [b"\xff\xfe great \xc3("]
outputs = signature(reviews=tf.constant(texts))
assert "lstm_reviews" not in sys.modules
print(json.dumps({key: value.numpy().tolist() for key, value in outputs.items()}))
"""


@pytest.mark.slow
def test_loads_without_the_package_and_matches_keras(exported, tmp_path):
    run_dir, _, version = exported
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS)
    result = _python("-I", str(script), str(version), json.dumps(REVIEWS), str(REPO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])

    probability = np.array(outputs["probability"])
    expected = keras_probabilities(run_dir, REVIEWS)
    np.testing.assert_allclose(probability[: len(REVIEWS)], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        probability, 1 / (1 + np.exp(-np.array(outputs["logit"]))), atol=1e-6
    )
    # The numbers differ between reviews, so the comparison above could fail.
    assert np.ptp(expected[:3]) > 1e-2

    tokens = outputs["tokens"]
    assert tokens[2] == 12  # truncated to eval_max_length...
    assert probability[2] == pytest.approx(probability[3], abs=1e-6)  # ...keeping the ending
    assert abs(probability[2] - keras_probabilities(run_dir, [LONG_START])[0]) > 1e-3
    assert tokens[6] == tokens[7] == 0  # empty and blank: a prediction, and 0 tokens to say so
    # Invalid UTF-8 bytes are replaced (U+FFFD), as Python's "replace" does, and the rest read.
    replaced = b"\xff\xfe great \xc3(".decode("utf-8", errors="replace")
    assert tokens[-1] >= 1
    assert probability[-1] == pytest.approx(keras_probabilities(run_dir, [replaced])[0], abs=1e-5)


@pytest.mark.slow
def test_saved_model_cli_lists_string_input(exported):
    _, _, version = exported
    cli = Path(sys.executable).parent / "saved_model_cli"
    result = subprocess.run(
        [str(cli), "show", "--dir", str(version), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    serving = result.stdout.split("signature_def['serving_default']:", 1)[1]
    inputs, outputs = serving.split("following output(s):", 1)
    assert "inputs['reviews'] tensor_info:" in inputs
    assert "dtype: DT_STRING" in inputs and "shape: (-1)" in inputs
    for name in ("probability", "logit", "tokens"):
        assert f"outputs['{name}'] tensor_info:" in outputs.split("Method name", 1)[0]


@pytest.mark.slow
def test_failed_export_leaves_no_version_behind(exported, tmp_path, monkeypatch):
    run_dir, _, _ = exported
    model_dir = tmp_path / "models"
    # A crashed export's staging directory and a non-version entry are ignored.
    (model_dir / ".export-crashed" / "variables").mkdir(parents=True)
    (model_dir / "notes").mkdir()
    assert export.main([str(run_dir), "--out", str(model_dir)]) == 0
    assert (model_dir / "1" / "saved_model.pb").is_file()

    # Everything is written, then flushing it fails: no version 2 appears, nothing is left over.
    def disk_full(root):
        assert (root / "saved_model.pb").is_file()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(versions, "fsync_tree", disk_full)
    assert export.main([str(run_dir), "--out", str(model_dir)]) == 1
    monkeypatch.undo()
    assert sorted(path.name for path in model_dir.iterdir()) == [".export-crashed", "1", "notes"]


def test_publish_never_replaces_a_version(tmp_path, monkeypatch):
    """If another export takes the number first, the rename fails and the next number is used."""
    for name in ("1", "2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"theirs")
    staging = tmp_path / ".export-mine"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"mine")
    guesses = iter([2])  # a stale guess, as when a concurrent export published 2 meanwhile
    real_next = versions.next_version
    monkeypatch.setattr(versions, "next_version", lambda out: next(guesses, None) or real_next(out))
    assert versions.publish(staging, tmp_path) == tmp_path / "3"
    assert (tmp_path / "2" / "saved_model.pb").read_bytes() == b"theirs"
    assert (tmp_path / "3" / "saved_model.pb").read_bytes() == b"mine"


@pytest.mark.slow
def test_next_version_in_the_runs_export_dir(exported, tmp_path):
    run_dir, _, _ = exported
    config = json.loads((run_dir / "config.json").read_text())
    other_run = tmp_path / "run"
    other_run.mkdir()
    for name in ("vocabulary.txt", "model.keras"):
        (other_run / name).write_bytes((run_dir / name).read_bytes())
    config["export_dir"] = str(tmp_path / "from_config")
    (other_run / "config.json").write_text(json.dumps(config))
    shutil.copytree(exported[2], tmp_path / "from_config" / "1")
    # The next integer after the existing version, in the directory the run's config names.
    assert export.export_saved_model(other_run) == tmp_path / "from_config" / "2"


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_dir", "does not exist"),
        ("no_model", "lacks model.keras"),
        ("bad_model", "cannot load"),
        ("bad_vocabulary", "is not a vocabulary.txt"),
        ("repeated_token", "vocabulary.txt line 6 repeats the token 'the' of line 3"),
        ("other_vocabulary", "different runs"),
    ],
)
def test_bad_run_dir_is_a_clear_error(exported, tmp_path, capsys, damage, message):
    run_dir, _, _ = exported
    bad = tmp_path / "run"
    if damage != "no_dir":
        bad.mkdir()
        for name in ("config.json", "vocabulary.txt", "model.keras"):
            (bad / name).write_bytes((run_dir / name).read_bytes())
    if damage == "no_model":
        (bad / "model.keras").unlink()
    elif damage == "bad_model":
        (bad / "model.keras").write_bytes(b"PK\x03\x04 half a zip")
    elif damage == "bad_vocabulary":
        (bad / "vocabulary.txt").write_text("the\nmovie\n")
    elif damage == "repeated_token":  # a hand edit: as many lines, one token twice
        lines = (bad / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        assert lines[2] == "the"
        lines[5] = lines[2]
        (bad / "vocabulary.txt").write_text("\n".join(lines), encoding="utf-8")
    elif damage == "other_vocabulary":
        with open(bad / "vocabulary.txt", "a") as handle:
            handle.write("extra\nwords\n")
    assert export.main([str(bad), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and str(bad) in error
    assert not (tmp_path / "out" / "1").exists()


@pytest.mark.slow
def test_other_backend_is_refused_with_a_hint(exported, tmp_path):
    run_dir, _, _ = exported
    result = _python(
        "-m",
        "lstm_reviews.export",
        str(run_dir),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
        env={"KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 2
    assert "KERAS_BACKEND=tensorflow" in result.stderr and "'jax'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["peephole", "coupled", "gru"])
def test_every_cell_exports_loads_without_the_package_and_predicts(cell, tmp_path):
    """Each --cell variant: the SavedModel serves its numbers with no lstm_reviews code, and
    predict reads it."""
    import io

    from lstm_reviews import predict

    run_dir = tmp_path / "run"
    write_run_dir(run_dir, cell=cell)
    version = export.export_saved_model(run_dir, tmp_path / "saved_models" / "imdb_lstm")
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS)
    result = _python("-I", str(script), str(version), json.dumps(REVIEWS), str(REPO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    expected = keras_probabilities(run_dir, REVIEWS)
    np.testing.assert_allclose(outputs["probability"][: len(REVIEWS)], expected, atol=1e-5)
    assert np.ptp(expected[:3]) > 1e-2  # distinct numbers: the comparison can fail

    out = io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    assert predict.main(["--model", str(version), REVIEWS[0]], stdin=stdin, stdout=out) == 0
    assert json.loads(out.getvalue())["probability"] == pytest.approx(expected[0], abs=1e-5)


@pytest.mark.slow
def test_the_bound_on_one_review_can_be_set_at_export(exported, tmp_path, capsys):
    import tensorflow as tf

    out = tmp_path / "bounded"
    assert export.main([str(exported[0]), "--out", str(out), "--eval-max-length", "5"]) == 0
    served = tf.saved_model.load(str(out / "1")).signatures["serving_default"]
    assert int(served(tf.constant([LONG_START + LONG_END]))["tokens"][0]) == 5
    recorded = json.loads((out / "1" / "assets.extra" / "export.json").read_text())
    assert recorded["config"]["eval_max_length"] == 5
    with pytest.raises(SystemExit) as exit_:
        export.main([str(exported[0]), "--out", str(out), "--eval-max-length", "0"])
    assert exit_.value.code == 2
    assert "--eval-max-length must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_an_unfinished_run_is_refused_unless_allowed(tmp_path, capsys):
    run_dir, served = tmp_path / "run", tmp_path / "served"
    write_run_dir(run_dir)
    # As a run killed in its second epoch leaves it: model.keras holds epoch 1.
    RunDir(run_dir).write_state({"epochs_done": 1, "step": 4, "fit_done": False})
    assert export.main([str(run_dir), "--out", str(served)]) == 2
    assert capsys.readouterr().err == (
        f"error: {run_dir} holds an unfinished run (its training stopped after 1 epoch(s)); "
        f"finish it with python -m lstm_reviews.train and the run's options plus --resume, or "
        f"pass --allow-unfinished to export its best epoch so far\n"
    )
    assert not served.exists()
    assert export.main([str(run_dir), "--out", str(served), "--allow-unfinished"]) == 0
    assert capsys.readouterr().out == f"{served / '1'}\n"


@pytest.mark.slow
def test_a_resumed_run_records_the_version_published_before_its_kill(tmp_path):
    """Killed between the publishing of its version and the commit naming it, the run resumed
    records that version: TF Serving would load the same model published again as new."""
    from lstm_reviews.training.run import export_run
    from lstm_reviews.training.state import RunState

    run_dir, served = RunDir(tmp_path / "run"), tmp_path / "served"
    config = write_run_dir(run_dir.path, export_dir=str(served))
    state = RunState(data={}, fit_done=True, evaluated=True, run_id="0123abcd")
    run_dir.write_state(dataclasses.asdict(state))
    published = export.export_saved_model(run_dir.path)  # then the kill, before the commit
    info = json.loads((published / "assets.extra" / "export.json").read_text())
    assert info["run_id"] == "0123abcd"
    assert versions.published_version(served, "0123abcd") == published
    assert versions.published_version(served, "another run") is None

    export_run(config, run_dir, state)
    assert versions.version_dirs(served) == [published]
    assert json.loads((run_dir / "state.json").read_text())["exported"] == str(published)


@pytest.mark.slow
@pytest.mark.parametrize("out_option", [True, False])
def test_tensorflow_disk_full_is_one_line_naming_the_model_directory(
    exported, tmp_path, monkeypatch, capsys, out_option
):
    import tensorflow as tf

    run_dir, _, _ = exported

    def disk_full(archive, path):  # TensorFlow's save, as a full disk ends it
        (path / "saved_model.pb").write_bytes(b"half")
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables.data-00000-of-00001; No space left on device"
        )

    monkeypatch.setattr(versions, "write_saved_model", disk_full)
    monkeypatch.chdir(tmp_path)  # the run's export_dir is relative: saved_models/imdb_lstm
    if out_option:
        out, option = tmp_path / "models", "--out"
        argv = [str(run_dir), "--out", str(out)]
    else:
        out, option = Path("saved_models/imdb_lstm"), "the run's export_dir; --out chooses another"
        argv = [str(run_dir)]
    assert export.main(argv) == 1
    assert capsys.readouterr().err == (
        f"error: cannot write to {out}: No space left on device ({option})\n"
    )
    assert list(out.iterdir()) == []  # no version, no staging directory


@pytest.mark.slow
def test_a_model_directory_under_a_file_is_one_line(exported, tmp_path, capsys):
    run_dir, _, _ = exported
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "models"
    assert export.main([str(run_dir), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write to {out}: {tmp_path / 'taken'} is a file, not a folder (--out)\n"
    )
