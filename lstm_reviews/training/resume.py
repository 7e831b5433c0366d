"""What a run directory must hold before a run starts or resumes in it: a new run an empty
directory; --resume the same settings (config.json, and the settings the state records),
the same data and vocabulary, and a run not already finished. Each refusal is a UserError
saying what to restore or where to train instead."""

from __future__ import annotations

import json
from pathlib import Path

from lstm_reviews.config import Config, option, resume_conflicts
from lstm_reviews.errors import UserError
from lstm_reviews.rundir import CONFIG, LOCK, METRICS, PREVIOUS_STATE, STATE, RunDir


def _trained_config(run_dir: RunDir) -> tuple[Path, Config] | None:
    """(state file, Config) the newest readable state records the run was trained with;
    None if no state records one (older runs). Damaged states are left to read_states."""
    for path in (run_dir / STATE, run_dir / PREVIOUS_STATE):
        try:
            return path, Config.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
        except (OSError, ValueError, KeyError, TypeError, UserError):
            continue
    return None


def _check_config_file(run_dir: RunDir, saved: Config) -> None:
    """UserError if config.json (`saved`) differs from the settings the state records the
    run was trained with, in a setting a resumed run may not change: a hand edit."""
    trained = _trained_config(run_dir)
    if trained is None:
        return
    state_path, config = trained
    edited = resume_conflicts(config, saved)
    if edited:
        details = ", ".join(
            f"{name} {getattr(config, name)!r} (config.json: {getattr(saved, name)!r})"
            for name in edited
        )
        raise UserError(
            f"--resume: {run_dir / CONFIG} differs from the settings the run was trained "
            f'with, which {state_path} records under "config": {details}; its backups are '
            f"whole: restore config.json to those settings and resume with them"
        )


def data_identity(token_data) -> dict:
    """What --resume compares: the token settings (source, vocabulary size, validation split,
    standardization...) and where the reviews are, not the files' times or sizes."""
    settings = {key: value for key, value in token_data.settings.items() if key != "data"}
    data = dict(token_data.settings.get("data") or {})
    data.pop("mtime_ns", None)
    if isinstance(data.get("tarball"), dict):
        data["tarball"] = data["tarball"].get("path")
    return {**settings, "data": data}


def check_same_data(run_dir: RunDir, saved: dict | None, now: dict, vocabulary: list) -> None:
    """UserError if the resumed run would read other data or another vocabulary than the
    weights were trained on. saved: the state's data identity (None: no state yet)."""
    saved = now if saved is None else saved
    changed = sorted(key for key in {*saved, *now} if saved.get(key) != now.get(key))
    if changed:
        details = ", ".join(f"{key} {saved.get(key)!r} -> {now.get(key)!r}" for key in changed)
        raise UserError(
            f"--resume: the data differ from the run's in {run_dir.path}: {details}; resume "
            f"with the run's --data, or train in another --output-dir"
        )
    path = run_dir / "vocabulary.txt"
    if not path.exists():
        return
    kept = run_dir.read_vocabulary()
    if kept != vocabulary:
        line = next(
            (k for k, (a, b) in enumerate(zip(kept, vocabulary)) if a != b),
            min(len(kept), len(vocabulary)),
        )
        saved_token = kept[line] if line < len(kept) else "(end)"
        new_token = vocabulary[line] if line < len(vocabulary) else "(end)"
        raise UserError(
            f"--resume: {path} ({len(kept)} tokens) differs from the vocabulary the data give "
            f"now ({len(vocabulary)} tokens), first at line {line + 1}: {saved_token!r} -> "
            f"{new_token!r}; the weights were trained on the saved words"
        )


def make_run_dir(config: Config, run_dir: RunDir) -> None:
    """Creates the run directory of a new run (where its lock is taken); refuses a file, or
    --resume of a directory that does not exist (without creating it)."""
    path = run_dir.path
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} is a file; expected a directory for the run")
    if config.resume and not path.exists():
        raise UserError(f"--resume: {path} holds no run to resume (it does not exist)")
    path.mkdir(parents=True, exist_ok=True)


def check_run_dir(config: Config, run_dir: RunDir) -> None:
    """Checks the run directory against --resume, and a resumed run's settings (with the
    directory's lock held: what it holds cannot change meanwhile)."""
    path = run_dir.path
    # The lock file alone (a run killed before writing anything) is no run.
    exists = any(entry.name != LOCK for entry in path.iterdir())
    if exists and not config.resume:
        raise UserError(
            f"run directory {path} already exists and is not empty; pass --resume "
            f"to continue it, or choose another --output-dir"
        )
    if not config.resume:
        return
    if not exists:  # killed before it wrote anything (its tokens, say): nothing to lose
        print(f"--resume: {path} holds nothing of its run yet (stopped early): starting it")
        return
    if not (run_dir / "config.json").exists():
        raise UserError(f"--resume: {path} holds no run to resume (no config.json)")
    saved = run_dir.read_config()
    _check_config_file(run_dir, saved)
    changed = resume_conflicts(saved, config)
    if changed:
        details = ", ".join(
            f"{option(name)} {getattr(saved, name)!r} -> {getattr(config, name)!r}"
            for name in changed
        )
        raise UserError(f"--resume: settings differ from the run in {path}: {details}")


def committed_states(config: Config, run_dir: RunDir) -> list:
    """The run's committed states to resume from, newest first ([] for a new run); UserError
    if a --resume finds the run finished, or its only state damaged."""
    states = run_dir.read_states() if config.resume else []
    if config.resume and not states:
        if (run_dir / METRICS).exists():
            raise UserError(
                f"--resume: the run in {run_dir.path} already finished (metrics.json exists)"
            )
        if (run_dir / STATE).exists():  # damaged, and no earlier state to fall back on
            raise UserError(
                f"--resume: {run_dir / STATE} is damaged and there is no earlier state; "
                f"delete {run_dir.path} to train the run again"
            )
    return states
