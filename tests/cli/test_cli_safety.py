"""Nothing lost, fail closed, one exit-code table: the CLI side of issue 16 (real files)."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from acgate.cli import build_parser
from acgate.errors import (
    EXIT_BAD_INPUT,
    EXIT_CLEAN,
    EXIT_CODES,
    EXIT_INCOMPLETE,
    EXIT_POISON,
)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _activations(path: Path, activations: np.ndarray, labels: np.ndarray) -> Path:
    from acgate.io.activations import ActivationTable, write_activations

    table = ActivationTable(indices=np.arange(len(labels)), labels=labels, predictions=None,
                            activations=activations)
    return write_activations(path, table)


def _clean_activations(n_per_class: int = 40, small_class: int | None = None):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], n_per_class)
    if small_class:
        labels = np.concatenate([labels, np.full(small_class, 3)])
    return rng.normal(size=(len(labels), 8)) + 3 * labels[:, None], labels


@pytest.fixture()
def user_data(tmp_path, digits_parquet) -> Path:
    """A user's data folder: their dataset and their README."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.parquet").write_bytes(Path(digits_parquet(0.33)).read_bytes())
    (data / "README").write_text("the user's notes")
    return data


def test_scan_into_the_datasets_own_folder_is_refused_and_deletes_nothing(
        run_cli, user_data, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    before = _digest(user_data)
    run = run_cli(["scan", user_data / "train.parquet", "--out", user_data, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT, run.stderr
    assert "is or contains the input" in run.stderr
    assert _digest(user_data) == before


@pytest.mark.parametrize("out", [".", "sub/..", "..", "data"])
def test_scan_refuses_the_working_folder_its_parents_and_the_data_folder(
        run_cli, user_data, monkeypatch, tmp_path, out):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    before = _digest(tmp_path)
    run = run_cli(["scan", "data/train.parquet", "--out", out, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT, run.stderr
    assert "--out" in run.stderr
    assert _digest(tmp_path) == before


def test_scan_into_a_foreign_non_empty_folder_is_refused(run_cli, digits_parquet, tmp_path,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    run = run_cli(["scan", digits_parquet(0.33), "--out", folder, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "not written by acgate" in run.stderr and "--overwrite" in run.stderr
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_out_that_is_an_existing_file_is_bad_input(run_cli, digits_parquet, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "results.txt"
    target.write_text("mine")
    run = run_cli(["scan", digits_parquet(0.33), "--out", target, "--no-mlflow"])
    assert run.code == EXIT_BAD_INPUT
    assert "exists and is not a folder" in run.stderr
    assert target.read_text() == "mine"


def test_detect_refuses_the_activations_folder_and_the_working_folder(run_cli, tmp_path,
                                                                      monkeypatch):
    activations, labels = _clean_activations()
    acts = _activations(tmp_path / "acts" / "activations.parquet", activations, labels)
    monkeypatch.chdir(tmp_path)
    before = _digest(tmp_path)
    for out in (acts.parent, Path.cwd()):
        run = run_cli(["detect", acts, "--out", out, "--analysis", "size-silhouette"])
        assert run.code == EXIT_BAD_INPUT, run.stderr
    assert _digest(tmp_path) == before


def test_repair_refuses_the_scan_folder_it_reads(run_cli, digits_scan, digits_parquet,
                                                 tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scan = digits_scan(0.33)
    before = _digest(scan.out_dir)
    run = run_cli(["repair", digits_parquet(0.33), "--samples",
                   scan.out_dir / "samples.parquet", "--out", scan.out_dir, "--epochs", "1"])
    assert run.code == EXIT_BAD_INPUT, run.stderr
    assert "is or contains the input" in run.stderr
    assert _digest(scan.out_dir) == before


def test_poison_never_overwrites_its_input(run_cli, user_data, monkeypatch, tmp_path):
    monkeypatch.chdir(user_data)
    before = _digest(user_data)
    for out in ("train.parquet", "./train.parquet", str(user_data / "train.parquet")):
        run = run_cli(["poison", "train.parquet", "--out", out, "--rate", "0.1"])
        assert run.code == EXIT_BAD_INPUT, run.stderr
        assert "never replaces the original" in run.stderr
    os.symlink(user_data / "train.parquet", tmp_path / "link.parquet")
    run = run_cli(["poison", "train.parquet", "--out", tmp_path / "link.parquet"])
    assert run.code == EXIT_BAD_INPUT
    assert _digest(user_data) == before


def test_detect_on_all_zero_activations_is_an_error_not_clean(run_cli, tmp_path):
    _, labels = _clean_activations()
    acts = _activations(tmp_path / "activations.parquet", np.zeros((len(labels), 8)), labels)
    run = run_cli(["detect", acts, "--out", tmp_path / "out", "--analysis", "spectral"])
    assert run.code == EXIT_BAD_INPUT
    assert "carry no information" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_class_too_small_to_judge_is_incomplete_unless_allowed(run_cli, tmp_path):
    activations, labels = _clean_activations(small_class=4)
    acts = _activations(tmp_path / "activations.parquet", activations, labels)
    strict = ["--analysis", "size-silhouette", "--silhouette-threshold", "0.6"]
    run = run_cli(["detect", acts, "--out", tmp_path / "out", *strict])
    assert run.code == EXIT_INCOMPLETE, run.stdout + run.stderr
    assert "verdict: INCOMPLETE" in run.stdout
    assert "could not be judged" in run.stderr
    allowed = run_cli(["detect", acts, "--out", tmp_path / "out", *strict, "--allow-skipped"])
    assert allowed.code == EXIT_CLEAN


def test_rerunning_into_acgates_own_folder_replaces_it(run_cli, tmp_path):
    activations, labels = _clean_activations()
    acts = _activations(tmp_path / "activations.parquet", activations, labels)
    for _ in range(2):
        run = run_cli(["detect", acts, "--out", tmp_path / "out", "--analysis",
                       "size-silhouette", "--silhouette-threshold", "0.6"])
        assert run.code == EXIT_CLEAN, run.stderr
    assert (tmp_path / "out" / "samples.parquet").is_file()


def test_help_lists_every_exit_code(run_cli):
    run = run_cli(["--help"])
    for code, meaning in EXIT_CODES:
        assert f"{code}  {meaning}" in " ".join(run.stdout.split("\n  ")), run.stdout
    assert EXIT_POISON == 3


def test_every_option_of_every_command_says_what_it_does():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = {name: [a.option_strings[0] for a in command._actions
                      if a.option_strings and a.dest != "help" and not a.help]
               for name, command in commands.choices.items()}
    assert not any(missing.values()), missing
