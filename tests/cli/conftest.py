"""In-process CLI runs shared by the CLI tests (each digits scan trains a real proxy once)."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from acgate.cli import main


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str
    out: Path | None = None
    tracking_uri: str | None = None
    cwd_after: tuple[str, ...] = ()


def run_cli(argv: list[str]) -> CliRun:
    """``acgate.cli.main(argv)`` in-process, with stdout and stderr captured."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return CliRun(code=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(name="run_cli", scope="session")
def run_cli_fixture():
    return run_cli


@pytest.fixture(scope="session")
def poisoned_cli_scan(digits_parquet, tmp_path_factory) -> CliRun:
    """``acgate scan`` of digits poisoned at 33%, tracked in a SQLite MLflow store."""
    folder = tmp_path_factory.mktemp("cli-poisoned")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = folder / "scan"
    run = run_cli(["scan", digits_parquet(0.33), "--out", out, "--tracking-uri", uri,
                   "--experiment", "cli-test", "--seed", "0"])
    return CliRun(run.code, run.stdout, run.stderr, out=out, tracking_uri=uri)


@pytest.fixture(scope="session")
def clean_cli_scan(digits_parquet, tmp_path_factory) -> CliRun:
    """``acgate scan --no-mlflow`` of the clean digits, run from an empty working folder."""
    folder = tmp_path_factory.mktemp("cli-clean")
    cwd = folder / "cwd"
    cwd.mkdir()
    out = folder / "scan"
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        run = run_cli(["scan", digits_parquet(None), "--out", out, "--no-mlflow", "--no-report"])
        left = tuple(sorted(os.listdir(cwd)))
    finally:
        os.chdir(previous)
    return CliRun(run.code, run.stdout, run.stderr, out=out, cwd_after=left)
