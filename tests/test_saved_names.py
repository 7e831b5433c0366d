"""A model.keras names its custom objects by registered name and module: files saved before the
package moved its modules (commit 75967a4) must still load, and the registered names, which
those files carry, must never change."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
from helpers import TINY

from lstm_reviews.config import Config
from lstm_reviews.data.text import standardize_review
from lstm_reviews.model.adversarial import AdversarialClassifier
from lstm_reviews.model.cell import LSTMCell
from lstm_reviews.model.classifier import (
    MaskedTimePooling,
    build_model,
    compile_model,
    cross_entropy,
)
from lstm_reviews.model.variants import CoupledLSTMCell, GRUCell, PeepholeLSTMCell

# What saved files carry: spelt out, not read from the code, so a rename fails here.
REGISTERED_NAMES = {
    LSTMCell: "lstm_reviews>LSTMCell",
    PeepholeLSTMCell: "lstm_reviews>PeepholeLSTMCell",
    CoupledLSTMCell: "lstm_reviews>CoupledLSTMCell",
    GRUCell: "lstm_reviews>GRUCell",
    MaskedTimePooling: "lstm_reviews>MaskedTimePooling",
    cross_entropy: "lstm_reviews>cross_entropy",
    AdversarialClassifier: "lstm_reviews>AdversarialClassifier",
    standardize_review: "lstm_reviews>standardize_review",
}
# Where each object lived before the move (lstm_reviews/model.py, cell.py, variants.py, ...).
OLD_MODULES = {
    "lstm_reviews>LSTMCell": "lstm_reviews.cell",
    "lstm_reviews>PeepholeLSTMCell": "lstm_reviews.variants",
    "lstm_reviews>CoupledLSTMCell": "lstm_reviews.variants",
    "lstm_reviews>GRUCell": "lstm_reviews.variants",
    "lstm_reviews>MaskedTimePooling": "lstm_reviews.model",
    "lstm_reviews>cross_entropy": "lstm_reviews.model",
    "lstm_reviews>AdversarialClassifier": "lstm_reviews.adversarial",
    "lstm_reviews>standardize_review": "lstm_reviews.text",
}


def test_registered_names_are_the_ones_saved_files_carry():
    for serializable, name in REGISTERED_NAMES.items():
        assert keras.saving.get_registered_name(serializable) == name
    # Nothing else of ours is registered (a new one belongs in the lists above).
    ours = {key for key in keras.saving.get_custom_objects() if key.startswith("lstm_reviews>")}
    assert ours == set(REGISTERED_NAMES.values())


def _with_old_modules(config):
    """config.json with every custom object's module set to its pre-move path; returns the
    registered names it rewrote."""
    rewritten = set()

    def visit(node):
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and name.startswith("lstm_reviews>"):
                node["module"] = OLD_MODULES[name]
                rewritten.add(name)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return rewritten


@pytest.mark.parametrize("cell", ["lstm", "peephole", "coupled", "gru"])
def test_a_model_saved_under_the_old_module_names_loads(cell, tmp_path):
    # Adversarial (its own Model class) and max_mean pooling: every custom object a training
    # run's model.keras holds (its loss and optimizer are Keras' own).
    config = Config(**{**TINY, "adversarial_epsilon": 1.0}, cell=cell, pooling="max_mean")
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config, TINY["vocab_size"]), config)
    ids = np.random.default_rng(0).integers(1, TINY["vocab_size"], size=(3, 9)).astype("int32")
    expected = keras.ops.convert_to_numpy(model(ids, training=False))
    saved = tmp_path / "new.keras"
    model.save(saved)

    old = tmp_path / "model.keras"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                document = json.loads(data)
                rewritten = _with_old_modules(document)
                data = json.dumps(document).encode()
            target.writestr(item, data)
    cell_class = {"lstm": LSTMCell, "peephole": PeepholeLSTMCell}.get(cell)
    cell_class = cell_class or {"coupled": CoupledLSTMCell, "gru": GRUCell}[cell]
    assert {
        REGISTERED_NAMES[cell_class],
        "lstm_reviews>MaskedTimePooling",
        "lstm_reviews>AdversarialClassifier",
    } <= rewritten

    loaded = keras.saving.load_model(old)
    assert type(loaded) is AdversarialClassifier
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(ids, training=False)), expected)
