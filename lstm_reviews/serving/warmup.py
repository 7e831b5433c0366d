"""TF Serving's warm-up file for an export: assets.extra/tf_serving_warmup_requests.

TF Serving replays the requests of this file (a TFRecord of PredictionLog protos) when it
loads a version, before the version takes traffic, so the first real requests do not pay
for the graph's first runs. Ours: each example review alone, then all of them in one batch,
on the "serving_default" signature, input "reviews".

The protos are written without the tensorflow-serving-api package: it pins TensorFlow to
its own release (2.21 wants tensorflow>=2.21), which would narrow what training accepts,
and it brings gRPC. The envelope is three small messages whose field numbers protobuf
never changes (tensorflow_serving/apis/prediction_log.proto, predict.proto, model.proto);
the tensor inside is TensorFlow's own TensorProto (tf.make_tensor_proto). The tests parse
the file with tensorflow_serving.apis and replay it against the SavedModel.
"""

from __future__ import annotations

from pathlib import Path

WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for in assets.extra/
SIGNATURE = "serving_default"
EXAMPLE_REVIEWS = (
    "A wonderful film: the actors were brilliant and I loved every minute of the story.",
    "Awful plot, wooden acting and a boring script. The worst movie of the year.",
    "It was fine.",
    " ".join(["The long middle of a long review, which the server must read whole too."] * 40),
)

# Field numbers: ModelSpec.name 1, .signature_name 3; PredictRequest.model_spec 1, .inputs 2
# (map entry: key 1, value 2); PredictLog.request 1; PredictionLog.predict_log 6.
_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (string, bytes or sub-message) in protobuf's wire format."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def prediction_log(model_name: str, input_name: str, reviews: list[str]) -> bytes:
    """A serialized PredictionLog holding one PredictRequest of `reviews` (a batch)."""
    import tensorflow as tf

    tensor = tf.make_tensor_proto([review.encode("utf-8") for review in reviews], dtype=tf.string)
    model_spec = _field(1, model_name.encode("utf-8")) + _field(3, SIGNATURE.encode("utf-8"))
    inputs_entry = _field(1, input_name.encode("utf-8")) + _field(2, tensor.SerializeToString())
    request = _field(1, model_spec) + _field(2, inputs_entry)
    return _field(6, _field(1, request))


def write_warmup_requests(version_dir: Path, model_name: str, input_name: str) -> Path:
    """Writes version_dir/assets.extra/tf_serving_warmup_requests; returns its path."""
    import tensorflow as tf

    path = Path(version_dir) / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(exist_ok=True)
    requests = [[review] for review in EXAMPLE_REVIEWS] + [list(EXAMPLE_REVIEWS)]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for reviews in requests:
            writer.write(prediction_log(model_name, input_name, reviews))
    return path
