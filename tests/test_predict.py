"""The predict CLI: every input source, bad input of every kind, broken models, exit codes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import keras_probabilities, write_run_dir

from lstm_reviews import export, predict
from lstm_reviews.config import Config
from lstm_reviews.serving import prediction_lines
from lstm_reviews.serving import reviews as review_input

POSITIVE = "A wonderful film, the actors were brilliant and I loved the story."
NEGATIVE = "Awful plot. The worst movie of the year, boring and dull."


@pytest.fixture(scope="module")
def exported(tiny_export):
    """(run_dir, model_dir): one tiny run exported once (conftest.py), as .../imdb_lstm/1."""
    return tiny_export[:2]


@pytest.fixture(scope="module")
def predictor(exported):
    return predict.Predictor(exported[1])


def _stdin(data: bytes = b"", tty: bool = False):
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    stream.isatty = lambda: tty
    return stream


def _main(argv, stdin=None):
    """(exit code, JSON records) of predict.main, stdin an empty pipe unless given."""
    out = io.StringIO()
    code = predict.main(argv, stdin=_stdin() if stdin is None else stdin, stdout=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.slow
def test_reviews_from_arguments_match_the_keras_model(exported):
    run_dir, model_dir = exported
    expected = keras_probabilities(run_dir, [POSITIVE, NEGATIVE])
    for model in (model_dir, model_dir / "1"):  # the model directory or one version
        code, records = _main(["--model", str(model), POSITIVE, NEGATIVE])
        assert code == 0
        assert [record["text"] for record in records] == [POSITIVE[:59] + "…", NEGATIVE]
        for record, probability in zip(records, expected):
            assert record["probability"] == pytest.approx(probability, abs=1e-5)
            assert record["label"] == ("positive" if probability >= 0.5 else "negative")
            assert "source" not in record and "error" not in record
    assert abs(expected[0] - expected[1]) > 1e-2  # distinct numbers: the comparison can fail


def test_highest_version_is_used(tmp_path):
    for name in ("2", "10", "9", ".export-staging", "latest"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert predict.resolve_model_dir(tmp_path) == tmp_path / "10"  # numeric, not alphabetical
    assert predict.resolve_model_dir(tmp_path / "9") == tmp_path / "9"


@pytest.mark.slow
def test_file_one_review_per_line_with_invalid_utf8(exported, tmp_path, capsys):
    reviews = tmp_path / "reviews.txt"
    reviews.write_bytes(b"\xef\xbb\xbfGreat movie\r\n\r\nAwful \xff\xfe film\n   \nfine story")
    code, records = _main(["--model", str(exported[1]), "--file", str(reviews)])
    assert code == 0
    assert [(record["source"], record["line"]) for record in records] == [
        (str(reviews), n) for n in (1, 3, 5)
    ]
    assert records[0]["text"] == "Great movie"
    assert records[1]["text"] == "Awful \ufffd\ufffd film"
    expected = keras_probabilities(exported[0], [records[1]["text"]])[0]
    assert records[1]["probability"] == pytest.approx(expected, abs=1e-5)
    warning = capsys.readouterr().err
    assert f"{reviews} line 3" in warning and "invalid UTF-8" in warning


@pytest.mark.slow
def test_directory_of_txt_files(exported, tmp_path):
    folder = tmp_path / "pos"
    folder.mkdir()
    (folder / "1_9.txt").write_text(POSITIVE + "\n\nSecond paragraph of the same review.")
    (folder / "0_2.txt").write_text(NEGATIVE)
    (folder / "notes.md").write_text("not a review")
    code, records = _main(["--model", str(exported[1]), "--file", str(folder)])
    assert code == 0
    assert [record["source"] for record in records] == [
        str(folder / "0_2.txt"),
        str(folder / "1_9.txt"),
    ]
    assert "line" not in records[0]


@pytest.mark.slow
def test_standard_input(exported):
    lines = f"{POSITIVE}\n{NEGATIVE}\n".encode()
    code, records = _main(["--model", str(exported[1])], stdin=_stdin(lines))
    assert code == 0 and [(r["source"], r["line"]) for r in records] == [
        ("<stdin>", 1),
        ("<stdin>", 2),
    ]
    # "-" reads standard input in its place among the arguments.
    code, records = _main(["--model", str(exported[1]), "Great!", "-"], stdin=_stdin(lines))
    assert code == 0 and [r.get("source") for r in records] == [None, "<stdin>", "<stdin>"]


@pytest.mark.slow
def test_bad_reviews_each_get_a_prediction_or_a_clear_error(exported):
    run_dir, model_dir = exported
    huge = " ".join(["boring"] * 50_000 + ["wonderful", "brilliant"] * 25_000)  # 100,000 words
    html = "<p>The <b>ENDING</b> was <i>great</i>!</p><br /><br /><a href='x'>link</a>"
    scripts = "素晴らしい映画 отличный фильм فيلم رائع great"
    reviews = ["", "  \t ", huge, html, "😀🎬👍", "<br /><br />", scripts, POSITIVE]
    code, records = _main(["--model", str(model_dir), *reviews])
    assert code == 1  # some reviews failed...
    assert len(records) == len(reviews)  # ...yet every review has its line, in order
    errors = {index: record["error"] for index, record in enumerate(records) if "error" in record}
    assert set(errors) == {0, 1, 4, 5}
    assert errors[0].startswith("empty review") and errors[1].startswith("empty review")
    assert errors[4].startswith("no words left") and errors[5].startswith("no words left")
    assert records[2]["tokens"] == 12 and len(records[2]["text"]) == 60  # kept its last 12 tokens
    assert records[6]["tokens"] == 6  # non-Latin words are words (unknown ones)
    predicted = [2, 3, 6, 7]
    expected = keras_probabilities(run_dir, [reviews[index] for index in predicted])
    for index, probability in zip(predicted, expected):
        assert records[index]["probability"] == pytest.approx(probability, abs=1e-5)


@pytest.mark.slow
def test_a_failing_review_costs_only_its_own_line(predictor):
    class Flaky:
        def __call__(self, texts):
            if any("BOOM" in text for text in texts):
                raise ValueError("cannot handle BOOM")
            return predictor(texts)

    reviews = [
        review_input.Review(text, "f.txt", n)
        for n, text in enumerate([POSITIVE, "BOOM goes the film", NEGATIVE, "Great"], start=1)
    ]
    out = io.StringIO()
    assert (
        prediction_lines.run(Flaky(), reviews, out, batch_size=3)
        == prediction_lines.EXIT_SOME_FAILED
    )
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [record["line"] for record in records] == [1, 2, 3, 4]
    assert records[1]["error"] == "prediction failed: cannot handle BOOM"
    direct = predictor([POSITIVE, NEGATIVE, "Great"])
    # Batched differently (padded to another length), so equal up to float rounding.
    assert [records[i]["probability"] for i in (0, 2, 3)] == pytest.approx(
        [r["probability"] for r in direct], abs=1e-6
    )


def test_missing_model_path(tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    assert _main(["--model", str(missing), POSITIVE]) == (2, [])
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(missing) in error and "does not exist" in error


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, message",
    [
        ("empty_model_dir", "no SavedModel in"),
        ("empty_version", "has no saved_model.pb"),
        ("no_variables", "has no variables/"),
        ("truncated_pb", "cannot load the SavedModel"),
        ("garbage_pb", "cannot load the SavedModel"),
        ("truncated_variables", "cannot load the SavedModel"),
        ("not_a_review_model", "does not take review strings"),
    ],
)
def test_broken_model_is_a_clear_error(exported, tmp_path, capsys, damage, message):
    model_dir = tmp_path / "imdb_lstm"
    model_dir.mkdir()
    if damage != "empty_model_dir":
        shutil.copytree(exported[1] / "1", model_dir / "1")
        version = model_dir / "2"  # the newest version is the broken one
        shutil.copytree(exported[1] / "1", version)
        pb = version / "saved_model.pb"
        data = version / "variables" / "variables.data-00000-of-00001"
        if damage == "empty_version":
            shutil.rmtree(version)
            version.mkdir()
        elif damage == "no_variables":
            shutil.rmtree(version / "variables")
        elif damage == "truncated_pb":  # as a non-atomic writer would leave it
            pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
        elif damage == "garbage_pb":
            pb.write_bytes(os.urandom(4096))
        elif damage == "truncated_variables":
            data.write_bytes(data.read_bytes()[:16])
        elif damage == "not_a_review_model":  # a valid SavedModel, but numbers in, not text
            import tensorflow as tf

            module = tf.Module()
            module.serve = tf.function(
                lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([None], tf.float32)]
            )
            shutil.rmtree(version)
            tf.saved_model.save(module, str(version), signatures={"serving_default": module.serve})
    assert _main(["--model", str(model_dir), POSITIVE]) == (2, [])
    error = capsys.readouterr().err
    assert message in error and str(model_dir) in error
    assert len(error.strip().splitlines()) == 1  # one clear line, no traceback


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # nothing to read: no arguments, stdin a terminal
        predict.main(["--model", str(tmp_path)], stdin=_stdin(tty=True), stdout=io.StringIO())
    assert exit_info.value.code == 2 and "no reviews given" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--file", str(tmp_path / "nope.txt")], stdin=_stdin(), stdout=io.StringIO())
    assert (
        exit_info.value.code == 2
        and f"--file {tmp_path / 'nope.txt'} does not exist" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--file", str(tmp_path)], stdin=_stdin(), stdout=io.StringIO())
    assert exit_info.value.code == 2 and "without .txt files" in capsys.readouterr().err


@pytest.mark.slow
def test_nul_byte_separates_words_in_training_and_serving(exported, tmp_path):
    run_dir, model_dir = exported
    # Before: the SavedModel and the training vectorizer both read only "Awful plot".
    with_nul = "Awful plot\0 the actors were brilliant and I loved the story."
    with_space = with_nul.replace("\0", " ")
    code, records = _main(["--model", str(model_dir), with_nul, with_space, "Awful plot"])
    assert code == 0
    assert records[0]["tokens"] == records[1]["tokens"] > records[2]["tokens"]
    assert records[0]["probability"] == pytest.approx(records[1]["probability"], abs=1e-6)
    # Training reads reviews through the same vectorizer (text.standardize_review).
    training = keras_probabilities(run_dir, [with_nul, with_space, "Awful plot"])
    assert training[0] == pytest.approx(training[1], abs=1e-6)
    assert abs(training[0] - training[2]) > 1e-3  # the cut review scores differently
    assert records[0]["probability"] == pytest.approx(training[0], abs=1e-5)
    # From a file too: one NUL in a line of text is not "binary".
    reviews = tmp_path / "nul.txt"
    reviews.write_bytes(with_nul.encode() + b"\n")
    code, file_records = _main(["--model", str(model_dir), "--file", str(reviews)])
    assert code == 0 and file_records[0]["tokens"] == records[1]["tokens"]


@pytest.mark.slow
def test_no_nul_reaches_an_older_savedmodel(predictor):
    # SavedModels exported before standardize_review read NUL as a space cut the review there.
    sent = []
    signature = predictor._signature

    def recording(**inputs):
        sent.extend(next(iter(inputs.values())).numpy().tolist())
        return signature(**inputs)

    predictor._signature = recording
    try:
        predictor(["Awful plot\0 brilliant story"])
    finally:
        predictor._signature = signature
    assert sent == [b"Awful plot  brilliant story"]


def _binary_inputs(tmp_path):
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text(f"{POSITIVE}\n{NEGATIVE}\n", encoding="utf-16")  # with its byte order mark
    utf16_no_bom = tmp_path / "utf16le.txt"
    utf16_no_bom.write_text(f"{POSITIVE}\n{NEGATIVE}\n", encoding="utf-16-le")
    controls = tmp_path / "controls.txt"
    controls.write_bytes(bytes(range(1, 32)) * 4 + POSITIVE.encode())
    return {
        "program": sys.executable,  # an executable: NUL bytes and invalid UTF-8
        "utf16": utf16,
        "utf16_no_bom": utf16_no_bom,
        "controls": controls,
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["program", "utf16", "utf16_no_bom", "controls"])
def test_binary_input_is_refused_naming_the_file(exported, tmp_path, capsys, kind):
    path = str(_binary_inputs(tmp_path)[kind])
    assert _main(["--model", str(exported[1]), POSITIVE, "--file", path]) == (2, [])
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path} is not text (")
    assert error.rstrip().endswith("expected UTF-8 text, one review per line")
    assert len(error.strip().splitlines()) == 1
    # On standard input the same.
    data = Path(path).read_bytes()
    assert _main(["--model", str(exported[1])], stdin=_stdin(data)) == (2, [])
    assert capsys.readouterr().err.startswith("error: <stdin> is not text (")


@pytest.mark.slow
def test_latin1_text_is_still_predicted(exported, tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes(
        "Café scenes: a wonderful film, the actors were brilliant.\n".encode("latin-1")
    )
    code, records = _main(["--model", str(exported[1]), "--file", str(path)])
    assert code == 0 and records[0]["text"].startswith("Caf\ufffd scenes")
    assert "invalid UTF-8" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_entries_of_a_directory_get_error_lines_the_rest_predictions(exported, tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    (folder / "0_9.txt").write_text(POSITIVE)
    (folder / "1_1.txt").mkdir()  # a folder named like a review
    (folder / "2_1.txt").symlink_to(tmp_path / "gone.txt")  # a dangling link
    (folder / "3_1.txt").write_text(NEGATIVE, encoding="utf-16")
    (folder / "4_2.txt").write_text(NEGATIVE)
    code, records = _main(["--model", str(exported[1]), "--file", str(folder)])
    assert code == 1
    assert [record["source"] for record in records] == [
        str(folder / f"{name}.txt") for name in ("0_9", "1_1", "2_1", "3_1", "4_2")
    ]
    assert [("error" in record) for record in records] == [False, True, True, True, False]
    assert records[1]["error"].startswith(f"cannot read {folder / '1_1.txt'}: ")
    assert records[2]["error"].startswith(f"cannot read {folder / '2_1.txt'}: ")
    assert records[3]["error"].startswith("not text (it starts with a UTF-16")
    assert records[3]["error"].endswith("expected UTF-8 text, one review per file")
    expected = keras_probabilities(exported[0], [POSITIVE, NEGATIVE])
    assert [records[0]["probability"], records[4]["probability"]] == pytest.approx(
        expected, abs=1e-5
    )


@pytest.mark.slow
def test_folder_of_review_folders_is_refused_naming_them(exported, tiny_imdb, capsys):
    split = tiny_imdb / "test"  # pos/, neg/ and the movie lists urls_pos.txt, urls_neg.txt
    assert sorted(path.name for path in split.glob("*.txt")) == ["urls_neg.txt", "urls_pos.txt"]
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(exported[1]), "--file", str(split)], stdin=_stdin())
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"--file {split} holds no .txt reviews itself" in error
    assert f"--file {split / 'neg'} --file {split / 'pos'}" in error
    # The suggested command predicts every review and nothing else.
    code, records = _main(
        ["--model", str(exported[1]), "--file", str(split / "neg"), "--file", str(split / "pos")]
    )
    assert code == 0 and len(records) == len(list(split.glob("*/*.txt")))
    assert not any("urls_" in record["source"] for record in records)


@pytest.mark.slow
def test_empty_input_gets_an_error_line_like_an_empty_review(exported, tmp_path):
    model = str(exported[1])
    code, records = _main(["--model", model])  # an empty pipe
    assert code == 1 and records == [
        {
            "text": "",
            "error": "no reviews in <stdin>: it is empty or only blank lines",
            "source": "<stdin>",
        }
    ]
    assert _main(["--model", model, ""])[0] == 1  # the same exit code as an empty argument
    empty, blank = tmp_path / "empty.txt", tmp_path / "blank.txt"
    empty.write_bytes(b"")
    blank.write_bytes(b"\n  \r\n\t\n")
    code, records = _main(["--model", model, POSITIVE, "--file", str(empty), "--file", str(blank)])
    assert code == 1
    assert "probability" in records[0]
    assert [(record["source"], record["error"]) for record in records[1:]] == [
        (str(path), f"no reviews in {path}: it is empty or only blank lines")
        for path in (empty, blank)
    ]


@pytest.mark.slow
def test_closed_standard_streams_exit_2(exported, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)  # what Python makes of a closed descriptor 0
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(exported[1]), "-"], stdout=io.StringIO())
    assert exit_info.value.code == 2
    assert "'-' reads standard input, but it is closed" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdout", None)
    assert predict.main(["--model", str(exported[1]), POSITIVE], stdin=_stdin()) == 2
    assert capsys.readouterr().err.startswith("error: standard output is closed")


def test_help_and_docstring_document_exit_codes():
    text = predict.build_parser().format_help()
    for code in (
        "0  every review got a prediction",
        "1  some reviews got an error line",
        "output failed (disk full)",
        "2  usage error, input that is not UTF-8 text",
        "closed standard",
    ):
        assert code in text and code in predict.__doc__
    assert "an empty file or standard\ninput" in text


# This checkout's code first: an editable install may point at another checkout.
CLI_ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join(
        [str(Path(predict.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    ),
}


def _cli(args, cwd, input=None):
    return subprocess.run(
        [sys.executable, "-m", "lstm_reviews.predict", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=300,
        env=CLI_ENV,
    )


@pytest.mark.slow
def test_command_line_pipe_and_corrupt_model(exported, tmp_path):
    result = _cli(
        ["--model", str(exported[1])], tmp_path, input=b"Great movie\nAwful \xff film\n\n"
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    records = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert [record["line"] for record in records] == [1, 2]
    assert b"<stdin> line 2: invalid UTF-8" in result.stderr

    broken = tmp_path / "broken"
    shutil.copytree(exported[1], broken)
    (broken / "1" / "saved_model.pb").write_bytes(b"\x08\x01half")
    result = _cli(["--model", str(broken), "Great movie"], tmp_path)
    assert result.returncode == 2 and result.stdout == b""
    assert b"cannot load the SavedModel" in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.slow
def test_command_line_closed_streams_and_full_disk(exported, tmp_path):
    """The real thing: descriptors closed by the shell, and standard output on /dev/full."""
    model = str(exported[1])
    script = f'exec "$0" -m lstm_reviews.predict --model {model} "$@"'

    def shell(redirect, *args):
        return subprocess.run(
            ["sh", "-c", f"{script} {redirect}", sys.executable, *args],
            cwd=tmp_path,
            capture_output=True,
            timeout=300,
            env=CLI_ENV,
        )

    for redirect, args, code, message in (
        ("<&-", ["-"], 2, b"error: '-' reads standard input, but it is closed"),
        (">&-", [POSITIVE], 2, b"error: standard output is closed"),
        (
            ">/dev/full",
            [POSITIVE],
            1,
            b"error: cannot write to standard output: No space left on device",
        ),
    ):
        result = shell(redirect, *args)
        assert result.returncode == code, (redirect, result.stderr.decode()[-3000:])
        assert message in result.stderr, result.stderr.decode()[-3000:]
        assert b"Traceback" not in result.stderr and b"Exception ignored" not in result.stderr


def test_length_batches_keep_a_long_review_from_padding_short_ones():
    lengths = [10] * 15 + [369_187] + [12] * 16
    grouped = prediction_lines.length_batches(lengths, 32)
    assert sorted(index for batch in grouped for index in batch) == list(range(32))
    assert [15] in grouped  # the long one alone
    budget = 32 * prediction_lines.TOKENS_PER_REVIEW
    for batch in grouped:
        assert len(batch) <= 32
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget
    # IMDB-sized reviews fill batches
    assert len(prediction_lines.length_batches([300] * 100, 32)) == 4


def _predict_process(model: Path, reviews: list[str], folder: Path) -> tuple:
    """(records, seconds, peak bytes) of `python -m lstm_reviews.predict` on a file of
    `reviews`; the peak is the child's own maximum resident memory."""
    folder.mkdir()
    (folder / "reviews.txt").write_text("\n".join(reviews) + "\n", encoding="utf-8")
    start = time.monotonic()
    with open(folder / "out.jsonl", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lstm_reviews.predict", "--model", str(model)]
            + ["--file", str(folder / "reviews.txt")],
            cwd=folder,
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=CLI_ENV,
        )
        killer = threading.Timer(240, process.kill)  # a hung run fails, it does not hang CI
        killer.start()
        _, status, usage = os.wait4(process.pid, 0)
        killer.cancel()
    seconds = time.monotonic() - start
    assert os.waitstatus_to_exitcode(status) == 0
    records = [json.loads(line) for line in (folder / "out.jsonl").read_text().splitlines()]
    return records, seconds, usage.ru_maxrss * 1024  # kilobytes on Linux


@pytest.mark.slow
def test_a_2mb_review_among_short_ones_is_cut_and_costs_seconds_and_little_memory(tmp_path):
    """Issue #27 C1: one 2 MB line (369,187 tokens) made a batch of 32 padded to its length:
    minutes and gigabytes. Now it costs about what the 31 short reviews alone cost (most of
    predict's memory is TensorFlow's; the absolute figures: benchmarks/bench_long_review.py)."""
    write_run_dir(tmp_path / "run", eval_max_length=Config().eval_max_length)
    model = export.export_saved_model(tmp_path / "run", tmp_path / "model")
    words = POSITIVE.split() + NEGATIVE.split()
    long_review = " ".join(words[index % len(words)] for index in range(369_187))
    assert len(long_review.encode()) > 2_000_000
    short = [POSITIVE] * 15 + [NEGATIVE] * 16
    _, _, short_peak = _predict_process(model, short, tmp_path / "short")
    records, seconds, peak = _predict_process(
        model, short[:15] + [long_review] + short[15:], tmp_path / "long"
    )
    assert len(records) == 32 and all("probability" in record for record in records)
    assert records[15]["tokens"] == Config().eval_max_length
    assert [record["tokens"] for record in records[:15]] == [records[0]["tokens"]] * 15
    extra = (peak - short_peak) / 2**20
    assert extra < 256, f"the long review cost {extra:.0f} MiB more ({peak / 2**20:.0f} MiB)"
    assert peak < 2 << 30, f"peak memory {peak / 2**20:.0f} MiB"
    assert seconds < 120, f"{seconds:.0f} s"  # seconds alone; generous for a loaded CI machine


@pytest.mark.slow
def test_binary_after_the_first_8_kb_gets_error_lines_and_few_warnings(exported, tmp_path, capsys):
    """A text file with a program appended past the part read to tell text from binary:
    each line of the program is an error, not a prediction; each text line is predicted."""
    text_lines = [POSITIVE, NEGATIVE] * (review_input.SNIFF_BYTES // len(POSITIVE + NEGATIVE) + 2)
    text = "\n".join(text_lines).encode() + b"\n"
    assert len(text) > review_input.SNIFF_BYTES
    program = Path(sys.executable).resolve().read_bytes()[:20000]
    assert b"\0" in program and b"\n" in program
    latin1 = "Café: a wonderful film.\n".encode("latin-1")  # invalid UTF-8 but text: predicted
    path = tmp_path / "reviews.txt"
    path.write_bytes(text + latin1 * (review_input.MAX_WARNINGS + 3) + program)
    code, records = _main(["--model", str(exported[1]), "--file", str(path)])
    assert code == 1
    predicted = [record for record in records if "probability" in record]
    assert len(predicted) == len(text_lines) + review_input.MAX_WARNINGS + 3
    assert [record["line"] for record in predicted] == list(range(1, len(predicted) + 1))
    errors = records[len(predicted) :]
    assert errors and all(
        record["error"].startswith("not text (") and record["text"] == "" for record in errors
    )
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == review_input.MAX_WARNINGS + 1
    assert all("invalid UTF-8" in line for line in warnings[:-1])
    assert warnings[-1] == "warning: ... and 3 more like these, not shown"


@pytest.mark.parametrize(
    "line, binary",
    [
        (b"Awful \xff\xfe film", False),  # Latin-1 bytes in text
        (b"Caf\xe9", False),
        (b"Awful plot\0 the actors", False),  # one NUL separates words
        (b"\x1b[1mGreat\x1b[0m movie, the actors were brilliant", False),  # a terminal's colours
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00", True),
        (b"\x00\x00\xe8\x03\x00\x00\xff\xff", True),
        (bytes(range(0x80, 0x100)), True),  # undecodable through and through
    ],
)
def test_line_not_text(line, binary):
    assert (review_input.line_not_text(line) is not None) == binary
