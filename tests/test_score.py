"""The Beam scoring pipeline: same numbers as predict, every line accounted for, clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TRAIN_TEXTS

from lstm_reviews import predict, score
from lstm_reviews.serving import score_lines, scoring

WORDS = " ".join(TRAIN_TEXTS).split() + ["unknownword", "<br />", "film!"]


@pytest.fixture(scope="module")
def model_dir(tiny_export):
    return tiny_export[1]  # exported once for the session (conftest.py)


def _reviews(count: int, seed: int = 0) -> list[str]:
    """Reviews of 1 to 40 words: some longer than the tiny model's 12-token bound."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 41))) for _ in range(count)]


def _score(output: Path, inputs: list[str], model, *extra) -> tuple[int, list[dict], list[dict]]:
    """(exit code, predictions records, errors records) of one score.main run."""
    argv = ["--model", str(model), "--output", str(output), *extra]
    for pattern in inputs:
        argv += ["--input", pattern]
    code = score.main(argv)
    records = {}
    for kind in ("predictions", "errors"):
        records[kind] = [
            json.loads(line)
            for shard in sorted(output.glob(f"{kind}-*.jsonl"))
            for line in shard.read_text(encoding="utf-8").splitlines()
        ]
    return code, records["predictions"], records["errors"]


@pytest.mark.slow
def test_probabilities_equal_predicts(model_dir, tmp_path):
    texts = _reviews(300)
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.txt").write_text("\n".join(texts[:150]) + "\n", encoding="utf-8")
    (data / "b.jsonl").write_text(
        "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts[150:])),
        encoding="utf-8",
    )
    code, predictions, errors = _score(
        tmp_path / "out", [str(data / "*")], model_dir, "--batch-size", "16", "--num-shards", "2"
    )
    assert (code, errors) == (0, [])
    assert len(list((tmp_path / "out").glob("predictions-0000?-of-00002.jsonl"))) == 2
    expected = predict.Predictor(model_dir)(texts)
    by_place = {}
    for record in predictions:
        if "id" in record:
            by_place[150 + int(record["id"][1:])] = record
        else:
            assert record["source"] == str(data / "a.txt")
            by_place[record["line"] - 1] = record
    assert sorted(by_place) == list(range(300))
    for index, want in enumerate(expected):
        got = by_place[index]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
        assert got["tokens"] == want["tokens"]
        assert got["label"] == ("positive" if want["probability"] >= 0.5 else "negative")
    assert max(r["tokens"] for r in predictions) == 12  # the SavedModel's bound applied
    spread = [r["probability"] for r in predictions]
    assert max(spread) - min(spread) > 0.1  # distinct numbers: the comparison can fail


@pytest.mark.slow
def test_every_line_lands_once_good_or_bad(model_dir, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    good = TRAIN_TEXTS[0]
    text_lines = [good, "", "Bad \udcff\udcfe bytes", "   ", "<br /><br />", TRAIN_TEXTS[1]]
    plain_bytes = "\r\n".join(text_lines).encode("utf-8", errors="surrogateescape")
    (data / "plain.txt").write_bytes(b"\xef\xbb\xbf" + plain_bytes)
    json_lines = [
        json.dumps({"id": 1, "text": good}),
        '{"id": 2, "text": "unterminated',
        json.dumps({"id": 3, "body": good}),
        json.dumps(["a list"]),
        "",
        json.dumps({"text": TRAIN_TEXTS[2]}),
        json.dumps({"id": 7, "text": "<i>--</i>"}),
    ]
    (data / "reviews.jsonl").write_text("\n".join(json_lines) + "\n", encoding="utf-8")
    (data / "image.bin").write_bytes(bytes(range(256)) * 8)
    code, predictions, errors = _score(tmp_path / "out", [str(data / "*")], model_dir)
    assert code == scoring.EXIT_SOME_BAD
    names = ("plain.txt", "reviews.jsonl", "image.bin")
    plain, jsonl, binary = (str(data / name) for name in names)
    reasons = {(r["source"], r["line"]): r["error"] for r in errors}
    assert len(reasons) == len(errors)  # no line twice
    assert reasons[(binary, None)].startswith("not text (")
    assert reasons[(plain, 2)] == score_lines.EMPTY and reasons[(plain, 4)] == score_lines.EMPTY
    assert reasons[(plain, 3)].startswith("not UTF-8 text")
    assert reasons[(plain, 5)].startswith("no words left")
    assert reasons[(jsonl, 2)].startswith("bad JSON")
    assert reasons[(jsonl, 3)] == reasons[(jsonl, 4)] == 'no "text" field holding a string'
    assert reasons[(jsonl, 5)] == score_lines.EMPTY
    assert reasons[(jsonl, 7)].startswith("no words left")
    assert [r["id"] for r in errors if "id" in r] == [7]
    placed = {(r["source"], r["line"]) for r in predictions if "source" in r}
    assert placed == {(plain, 1), (plain, 6), (jsonl, 6)}
    assert [r["id"] for r in predictions if "id" in r] == [1]
    every_line = {(plain, n) for n in range(1, 7)} | {(jsonl, n) for n in range(1, 8)}
    assert placed | {(jsonl, 1)} | set(reasons) == every_line | {(binary, None)}
    assert len(predictions) + len(errors) == 6 + 7 + 1
    # The BOM of line 1 is not part of the review: same number as the clean text.
    first = next(r for r in predictions if r.get("line") == 1)
    assert first["probability"] == pytest.approx(
        predict.Predictor(model_dir)([good])[0]["probability"], abs=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_model", "broken_model", "no_match", "bad_batch"])
def test_clear_errors_exit_2(model_dir, tmp_path, capsys, case):
    reviews = tmp_path / "r.txt"
    reviews.write_text("Great film\n")
    model, pattern, extra = model_dir, str(reviews), []
    if case == "missing_model":
        model = tmp_path / "no_model"
    elif case == "broken_model":
        model = tmp_path / "broken"
        (model / "1").mkdir(parents=True)
        (model / "1" / "saved_model.pb").write_bytes(b"garbage")
        (model / "1" / "variables").mkdir()
    elif case == "no_match":
        pattern = str(tmp_path / "nothing*.txt")
    else:
        extra = ["--batch-size", "0"]
    with pytest.raises(SystemExit) if case == "bad_batch" else contextlib.nullcontext():
        code = _score(tmp_path / "out", [pattern], model, *extra)[0]
        assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") or "error: --batch-size" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()  # refused before the pipeline ran


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_help_imports_neither_tensorflow_nor_beam():
    done = _run_python(
        "import sys\n"
        "from lstm_reviews import score\n"
        "try:\n    score.main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "heavy = [m for m in ('tensorflow', 'apache_beam', 'keras') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    assert "HEAVY []" in done.stdout, done.stderr
    assert "--runner" in done.stdout and "pip install -e .[beam]" in done.stdout


@pytest.mark.slow
def test_without_beam_a_clear_error(tmp_path):
    reviews = tmp_path / "r.txt"
    reviews.write_text("Great film\n")
    done = _run_python(
        "import sys\n"
        "class NoBeam:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'apache_beam':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoBeam())\n"
        "from lstm_reviews import score\n"
        f"sys.exit(score.main(['--input', {str(reviews)!r}, '--output', {str(tmp_path)!r}]))\n"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "error: scoring needs Apache Beam, which is not installed: pip install -e .[beam]"
    )
