"""acgate.deploy.submit: argument parsing, offline validation against a real compiled pipeline,
and the error paths of a real kfp.Client pointed at a closed loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from acgate.deploy.submit import (
    EXIT_API_ERROR,
    EXIT_BAD_INPUT,
    SubmitError,
    SubmitRequest,
    main,
    normalize_cron,
    parse_args,
    read_pipeline_inputs,
    submit,
)

HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"


def argv(package: Path | str, *extra: str, params: dict | str | None = None) -> list[str]:
    args = ["--host", HOST, "--package", str(package), "--experiment", "acgate"]
    if params is not None:
        args += ["--params", params if isinstance(params, str) else json.dumps(params)]
    return args + list(extra)


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- cron -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("  */15   * * * 1-5 ", "0 */15 * * * 1-5"),
        ("30 0 3 * * *", "30 0 3 * * *"),
        ("@daily", "@daily"),
        ("@every  6h", "@every 6h"),
    ],
)
def test_normalize_cron_gives_kfp_six_fields(given, expected):
    assert normalize_cron(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", "0 3 * *", "0 0 3 * * * 2030"])
def test_normalize_cron_rejects_wrong_field_counts(bad):
    with pytest.raises(ValueError, match="--cron"):
        normalize_cron(bad)


# --- reading the compiled pipeline ------------------------------------------------------------


def test_read_pipeline_inputs_from_a_real_compiled_pipeline(compiled_pipeline):
    inputs = read_pipeline_inputs(compiled_pipeline)
    assert set(inputs) == {
        "dataset_uri",
        "size_threshold",
        "silhouette_threshold",
        "analysis",
        "seed",
        "model_name",
        "model_version",
        "mlflow_tracking_uri",
    }
    assert inputs["seed"]["parameterType"] == "NUMBER_INTEGER"
    assert inputs["size_threshold"]["parameterType"] == "NUMBER_DOUBLE"
    assert "defaultValue" not in inputs["dataset_uri"]


def test_read_pipeline_inputs_rejects_a_yaml_that_is_no_pipeline(tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text("image:\n  tag: 0.1.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"values\.yaml.*is not a compiled KFP pipeline"):
        read_pipeline_inputs(path)


def test_read_pipeline_inputs_rejects_broken_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("pipelineInfo: [unclosed\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cannot read pipeline package .*broken\.yaml"):
        read_pipeline_inputs(path)


# --- parse_args -------------------------------------------------------------------------------


def test_parse_args_one_run(compiled_pipeline):
    request = parse_args(
        argv(
            compiled_pipeline,
            params={
                "dataset_uri": "s3://bucket/train.parquet",
                "seed": 7.0,  # Helm renders YAML numbers as floats
                "size_threshold": 1,
                "model_version": None,  # null: the pipeline default applies
            },
        )
    )
    assert request == SubmitRequest(
        host=HOST,
        package_path=compiled_pipeline,
        experiment="acgate",
        params={"dataset_uri": "s3://bucket/train.parquet", "seed": 7, "size_threshold": 1.0},
    )
    assert isinstance(request.params["seed"], int)
    assert isinstance(request.params["size_threshold"], float)


def test_parse_args_recurring_run(compiled_pipeline, tmp_path):
    token = tmp_path / "token"
    token.write_text("not-a-real-token", encoding="utf-8")
    request = parse_args(
        argv(
            compiled_pipeline,
            "--recurring",
            "--cron",
            "0 3 * * *",
            "--namespace",
            "team-a",
            "--run-name",
            "nightly gate",
            "--token-file",
            str(token),
            params={"dataset_uri": "s3://b/x"},
        )
    )
    assert request.recurring is True
    assert request.cron == "0 0 3 * * *"
    assert request.namespace == "team-a"
    assert request.run_name == "nightly gate"
    assert request.token_file == token


def test_missing_package_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "pipeline.yaml"
    with pytest.raises(
        ValueError, match=r"pipeline package '.*nowhere/pipeline\.yaml' does not exist"
    ):
        parse_args(argv(missing))


def test_missing_package_file_exits_2_from_main(tmp_path, caplog):
    missing = tmp_path / "pipeline.yaml"
    assert main(argv(missing)) == EXIT_BAD_INPUT
    assert "python pipeline.py compile" in caplog.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{not json", r"--params .* is not valid JSON"),
        ("[1, 2]", r"--params must be a JSON object, got list"),
        ({"dataset_uri": "x", "datset": 1}, r"\['datset'\] are not inputs of pipeline"),
        ({"dataset_uri": "x", "seed": "3"}, r"'seed' must be an integer .* got '3'"),
        ({"dataset_uri": "x", "seed": 2.5}, r"'seed' must be an integer"),
        ({"dataset_uri": "x", "seed": True}, r"'seed' must be an integer"),
        ({"dataset_uri": "x", "size_threshold": "0.3"}, r"'size_threshold' must be a number"),
        ({"dataset_uri": 5}, r"'dataset_uri' must be a string"),
        ({}, r"lacks required inputs \['dataset_uri'\]"),
        ({"dataset_uri": None}, r"lacks required inputs \['dataset_uri'\]"),
    ],
)
def test_params_are_checked_against_the_pipeline(compiled_pipeline, params, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv(compiled_pipeline, params=params))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--recurring"], r"--recurring needs --cron"),
        (["--cron", "0 3 * * *"], r"without --recurring"),
        (["--recurring", "--cron", "3 * *"], r"has 3 fields"),
        (
            ["--token-file", "/nonexistent/token"],
            r"--token-file '/nonexistent/token' does not exist",
        ),
    ],
)
def test_schedule_and_token_flags_are_checked(compiled_pipeline, extra, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv(compiled_pipeline, *extra, params={"dataset_uri": "x"}))


def test_host_must_be_an_http_url(compiled_pipeline):
    args = argv(compiled_pipeline, params={"dataset_uri": "x"})
    args[1] = "ml-pipeline:8888"
    with pytest.raises(ValueError, match=r"--host 'ml-pipeline:8888' must start with http"):
        parse_args(args)


def test_empty_experiment_is_rejected(compiled_pipeline):
    args = argv(compiled_pipeline, params={"dataset_uri": "x"})
    args[5] = "  "
    with pytest.raises(ValueError, match="--experiment is empty"):
        parse_args(args)


def test_missing_required_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--package", "pipeline.yaml", "--experiment", "acgate"])
    assert exit_info.value.code == 2
    assert "--host" in capsys.readouterr().err


# --- talking to the API -----------------------------------------------------------------------


def test_unreachable_api_raises_submit_error_naming_the_host(compiled_pipeline):
    host = f"http://127.0.0.1:{closed_port()}"
    request = SubmitRequest(
        host=host, package_path=compiled_pipeline, experiment="acgate", params={"dataset_uri": "x"}
    )
    with pytest.raises(SubmitError, match=rf"KFP API at '{host}'.*pipeline\.yaml"):
        submit(request)


def test_unreachable_api_exits_1_from_main(compiled_pipeline, caplog, capsys):
    args = argv(compiled_pipeline, params={"dataset_uri": "x"})
    args[1] = f"http://127.0.0.1:{closed_port()}"
    assert main(args) == EXIT_API_ERROR
    assert "failed" in caplog.text
    assert capsys.readouterr().out == ""  # no run id on failure


def test_python_dash_m_entry_point(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "acgate.deploy.submit", *argv(tmp_path / "pipeline.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == EXIT_BAD_INPUT
    assert "does not exist" in completed.stderr
    assert completed.stdout == ""


def test_a_shard_count_below_one_is_refused_before_the_run():
    """Only the pipeline's plan_shards step would refuse it, after the proxy trained."""
    from acgate.deploy.submit import validate_params

    inputs = {"dataset_uri": {"parameterType": "STRING"},
              "n_shards": {"parameterType": "NUMBER_INTEGER", "defaultValue": 1}}
    with pytest.raises(ValueError, match=r"n_shards must be >= 1, got 0 \(refused before"):
        validate_params({"dataset_uri": "x", "n_shards": 0}, inputs)
    assert validate_params({"dataset_uri": "x", "n_shards": 4.0}, inputs) == {
        "dataset_uri": "x", "n_shards": 4}
