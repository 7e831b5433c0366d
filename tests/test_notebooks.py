"""Every notebook runs top to bottom in small mode (LSTM_REVIEWS_SMALL=1) on a tiny aclImdb.

Each notebook gets its own temporary working directory for runs, exports and caches, so
nothing is written into the repository and no notebook depends on another having run.
The kernel is this interpreter (sys.executable), through a kernelspec written for the test:
a python3 kernelspec found elsewhere on the machine could point at another Python.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import write_tiny_imdb
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "lstm-reviews-test"
CELL_TIMEOUT_S = 300

# Text that must appear in a notebook's outputs: evidence that its point was made, beyond
# "no cell raised".
EXPECTED = {
    "01_lstm_gates": [
        r"max \|RNN\(LSTMCell\) - keras\.layers\.LSTM\| = \d\.\de[-+]\d+",
        r"forget_gate: max \|LSTMCell - NumPy\| = \d\.\de[-+]\d+",
        r"accuracy on fresh sequences: [01]\.\d+",
        r"units whose c_29 carries the sign \(\|corr\| >= 0\.9\): \[\d",
        r"step 0's write, c_0 · f_1⋯f_29, is \d+\.\d% of their \|c_29\|",
    ],
    "02_train_on_imdb": [
        r"small mode",
        r"\{'train': \d+, 'validation': \d+, 'test': 40\}",
        r"test accuracy [01]\.\d{4} \(metrics\.json: [01]\.\d{4}\)",
        r"negative reviews called positive: \d+; positive called negative: \d+",
        r"P\(positive\) = [01]\.\d{3}  An amazing film",
    ],
    "03_remember_and_forget": [
        r"sum of A = [-+]\d+\.\d{6}; logit - bias = [-+]\d+\.\d{6}",
        r"40 test reviews",
        r"amazing\s+\d+\s+[-+]\d\.\d{4} \[",  # the ledger's row of "amazing"
        r'"amazing" / "this": mean \|A\| \d+\.\dx',
        r'-> "amazing" moves the cell state \d+\.\d\dx as much as "this"',
        r"Spearman rank correlation of A_t with occlusion, \d+ test reviews",
    ],
    "04_export_and_serve": [
        r"exported: .*notebook_imdb/1\b",
        r"P\(positive\) = [01]\.\d{3}  A wonderful, moving film",  # the standalone process
        r"P\(positive\) = [01]\.\d{3}  tokens =  0  ''",  # the empty review
        r"inputs\['reviews'\] tensor_info",  # saved_model_cli show
    ],
    "05_cell_variants": [
        r"cells: lstm, peephole, coupled, gru",
        r"coupled \(CoupledLSTMCell\)\n(    .*\n)*    input_gate = 1\.0 - forget_gate  # i_t",
        r"gru\s+[\d,]+\s+[\d,]+\s+[01]\.\d{4}\s+[01]\.\d{4}",
        r"peephole(\s+(\d\.\d{4}|nan)){6}\s+\d+\.\d\dx",
        r"\(40 test reviews per cell\)",
    ],
}

# Printed numbers that must reach a floor: (pattern whose group is the number, floor).
FLOORS = {
    # The gate figure of notebook 01 means something only if the memory task was learned.
    "01_lstm_gates": [(r"accuracy on fresh sequences: ([01]\.\d+)", 0.95)],
}


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A Jupyter data dir holding a kernelspec that starts this very interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lstm_reviews tests",
                "language": "python",
            }
        )
    )
    return root


def _outputs_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output["text"])
            elif "data" in output and "text/plain" in output["data"]:
                parts.append(output["data"]["text/plain"])
    return "\n".join(parts)


# TensorFlow's, absl's and CUDA's native log lines ("I0000 00:00:17.. 123 file.cc:52] ...")
# and absl's notice before its set-up: noise a reader cannot act on.
_START_UP_LINE = re.compile(
    r"^([IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl)", re.M
)


def _start_up_lines(notebook) -> list[str]:
    return [match.group(0) for match in _START_UP_LINE.finditer(_outputs_text(notebook))]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_in_small_mode(name, kernel_dir, tmp_path, monkeypatch):
    path = NOTEBOOKS / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))  # searched before the user's own kernels
    monkeypatch.setenv("LSTM_REVIEWS_SMALL", "1")
    monkeypatch.setenv("LSTM_REVIEWS_DATA", str(write_tiny_imdb(tmp_path / "data")))
    monkeypatch.setenv("LSTM_REVIEWS_WORK_DIR", str(work))
    monkeypatch.delenv("LSTM_REVIEWS_RUN_DIR", raising=False)  # 03/04 must train their own
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # notebook 04 exports a SavedModel
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # As in a user's Jupyter: the notebooks themselves keep TensorFlow's start-up lines out.
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)

    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    text = _outputs_text(notebook)
    missing = [pattern for pattern in EXPECTED[name] if not re.search(pattern, text)]
    assert not missing, f"{name}: outputs lack {missing}\n--- outputs ---\n{text[-4000:]}"
    assert not _start_up_lines(notebook), _start_up_lines(notebook)
    for pattern, floor in FLOORS.get(name, []):
        value = float(re.search(pattern, text).group(1))
        assert value >= floor, f"{name}: {pattern} printed {value}, below {floor}"
    # Everything the notebook wrote went to the temporary working directory.
    assert not (NOTEBOOKS / "runs").exists() and not (NOTEBOOKS / ".cache").exists()


def test_committed_notebooks_are_small_and_error_free():
    """The committed notebooks carry outputs of a real run: no error outputs, modest size."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        errors = [
            output.get("ename")
            for cell in notebook.cells
            for output in cell.get("outputs", [])
            if output.get("output_type") == "error"
        ]
        assert not errors, f"{path.name} was saved with errors: {errors}"
        assert not _start_up_lines(notebook), f"{path.name}: {_start_up_lines(notebook)}"
        assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size} bytes"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)
