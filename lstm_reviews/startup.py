"""How every command starts: quietly, and without TensorFlow until it needs it.

A command parses its options and checks its paths first, on the standard library alone, so
`--help` and a mistyped option or path answer at once. It reaches Keras (and with it
TensorFlow, JAX or PyTorch) through `deferred_import`, which imports on first use, and it
calls `quiet_start` before that first use. quiet_start:

    TF_CPP_MIN_LOG_LEVEL        3 unless set: TensorFlow's C++ log lines (CPU features, no
                                CUDA driver, version-skew notices) stay out of the output;
                                a real failure still arrives as a Python exception
    lines logged before absl    TensorFlow's libraries log a few lines as they load, before
    is set up                   absl reads TF_CPP_MIN_LOG_LEVEL ("All log messages before
                                absl::InitializeLog()...", "Could not find cuda drivers...");
                                keras and the devices are loaded with standard error held,
                                and the lines below that level are dropped, the rest passed on

    Keras' "Your input ran out of data" at the end of each evaluation: filtered (why: in
    quiet_start).

Keras' progress bars and the project's own messages are untouched. A TF_CPP_MIN_LOG_LEVEL
of the user's (0 shows everything) is kept and obeyed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import types
import warnings

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# 3: FATAL alone. TensorFlow's INFO, WARNING and ERROR lines on a healthy run are start-up
# notices and graph-version skew, none of them the user's to act on.
QUIET_LOG_LEVEL = "3"
# A line of absl / glog: severity letter, date, time, thread, file:line].
_NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
# absl's own notice before its set-up, a warning; and the continuation of TensorFlow's INFO
# line about CPU instructions.
_BEFORE_ABSL = "WARNING: All log messages before absl::InitializeLog() is called"
_CPU_FEATURES_CONTINUED = "To enable the following instructions:"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def quiet_start(module: str = "keras") -> None:
    """Sets TF_CPP_MIN_LOG_LEVEL (unless the user did) and imports `module` (e.g. "keras",
    "tensorflow", or a module of ours that imports them), and TensorFlow's devices if that
    loads TensorFlow, with the start-up lines below that level dropped. Call it after the
    cheap checks of a command, before its first use of Keras or TensorFlow; calling it
    again costs nothing."""
    os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LOG_LEVEL)
    # Keras says so at the end of every evaluation over a tf.data pipeline: bucketing by
    # length leaves the number of batches unknown to tf.data, so Keras reads until the data
    # end, which is how our evaluations are meant to end, and warns "interrupting training"
    # though none is. The commands never give steps_per_epoch, where the warning would matter.
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
    if module in sys.modules:
        return
    with _native_start_up_lines_filtered():
        importlib.import_module(module)
        tensorflow = sys.modules.get("tensorflow")  # Keras' backend, or Keras' data utilities
        if tensorflow is not None:
            # The CUDA libraries log as the devices are first listed: here, not mid-run.
            tensorflow.config.list_physical_devices()


def _minimum_level() -> int:
    try:
        return int(os.environ.get(LOG_LEVEL_VARIABLE, "0"))
    except ValueError:
        return 0


def is_dropped(line: str, minimum_level: int) -> bool:
    """Whether a native start-up line is below TF_CPP_MIN_LOG_LEVEL."""
    if line.startswith(_BEFORE_ABSL):
        return _SEVERITY["W"] < minimum_level
    if line.startswith(_CPU_FEATURES_CONTINUED):
        return _SEVERITY["I"] < minimum_level
    match = _NATIVE_LOG_LINE.match(line)
    return bool(match) and _SEVERITY[match.group(1)] < minimum_level


@contextlib.contextmanager
def _native_start_up_lines_filtered():
    """Within: file descriptor 2 (where C++ libraries write) goes to a temporary file. After:
    its lines that are not dropped (is_dropped) are written to sys.stderr."""
    minimum_level = _minimum_level()
    if minimum_level == 0:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2 to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_dropped(line, minimum_level))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _DeferredModule(types.ModuleType):
    """Stands for a module not imported yet: the first attribute read imports it (after
    quiet_start), and every read is the module's own, so patching the module is seen."""

    def __getattr__(self, name):
        quiet_start(self.__name__)
        return getattr(sys.modules[self.__name__], name)


def deferred_import(name: str) -> types.ModuleType:
    """The module `name`, imported on first use rather than now: a command's --help and
    its option and path errors then answer without loading Keras or TensorFlow."""
    return sys.modules.get(name) or _DeferredModule(name)
