"""Submit a compiled acgate pipeline to a Kubeflow Pipelines (KFP) API, once or on a schedule.

This is what the Helm chart's CronJob runs on every tick, and what a person runs by hand to
start one run or to register a KFP recurring run (one command line, wrapped here)::

    python -m acgate.deploy.submit --host http://ml-pipeline.kubeflow:8888
        --package pipeline.yaml --experiment acgate
        --params '{"dataset_uri": "s3://bucket/train.parquet", "size_threshold": 0.35}'

    python -m acgate.deploy.submit ... --recurring --cron "0 3 * * *"

Everything that can be checked offline is checked before the API is contacted: the host is an
``http(s)://`` URL, the package file exists and is a compiled KFP pipeline, ``--params`` is a
JSON object whose names and types match the pipeline's declared inputs (a ``null`` value means
"use the pipeline's default"), and ``--cron`` is a 5- or 6-field cron expression. The exit
code of :func:`main` is 0 on success, 2 for bad input and 1 when the API refused or could not
be reached. The run id (or recurring-run id) is written to standard output.

``kfp`` (the ``kfp`` extra) is imported only inside :func:`submit`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "SubmitError",
    "SubmitRequest",
    "build_parser",
    "main",
    "normalize_cron",
    "parse_args",
    "read_pipeline_inputs",
    "submit",
    "validate_params",
]

#: KFP IR parameter types and the JSON values each accepts.
_KFP_PARAMETER_TYPES = {
    "STRING": "a string",
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "true or false",
    "LIST": "a JSON list",
    "STRUCT": "a JSON object",
}

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_BAD_INPUT = 2


class SubmitError(RuntimeError):
    """The KFP API could not be reached, or it refused the submission."""


@dataclass(frozen=True)
class SubmitRequest:
    """One validated submission.

    Attributes:
        host: KFP API endpoint, ``http://`` or ``https://`` (e.g.
            ``http://ml-pipeline.kubeflow.svc.cluster.local:8888``).
        package_path: The compiled pipeline YAML (``python pipeline.py compile``).
        experiment: KFP experiment name; created when it does not exist.
        params: Pipeline arguments, already checked against the pipeline's inputs (nulls removed).
        recurring: Register a KFP recurring run instead of starting one run now.
        cron: The 6-field cron expression (seconds first) for a recurring run, else ``None``.
        namespace: KFP namespace (multi-user deployments), or ``None`` for the client default.
        run_name: Display name of the run or recurring run; ``None`` lets KFP (for a run) or the
            pipeline's name (for a recurring run) decide.
        token_file: A file holding a bearer token, re-read before each request (a projected
            ServiceAccount token with audience ``pipelines.kubeflow.org``), or ``None``.
    """

    host: str
    package_path: Path
    experiment: str
    params: dict[str, Any] = field(default_factory=dict)
    recurring: bool = False
    cron: str | None = None
    namespace: str | None = None
    run_name: str | None = None
    token_file: Path | None = None


def normalize_cron(expression: str) -> str:
    """Turn a cron expression into the 6-field form (seconds first) that KFP expects.

    KFP's scheduler (robfig/cron) reads six fields, ``second minute hour day month weekday``;
    a classic 5-field expression such as ``"0 3 * * *"`` gets ``"0 "`` (second zero) in front.
    Descriptors such as ``"@daily"`` or ``"@every 6h"`` pass through unchanged.

    Args:
        expression: A 5-field or 6-field cron expression, or an ``@`` descriptor.

    Returns:
        The 6-field expression (or the descriptor), with whitespace normalised.

    Raises:
        ValueError: If the expression is empty or has a number of fields other than 5 or 6.
    """
    fields = expression.split()
    if not fields:
        raise ValueError("--cron is empty; give a cron expression such as '0 3 * * *'")
    if fields[0].startswith("@"):
        return " ".join(fields)
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise ValueError(
        f"--cron {expression!r} has {len(fields)} fields; expected 5 "
        "('minute hour day month weekday') or 6 (seconds first), e.g. '0 3 * * *'"
    )


def read_pipeline_inputs(package_path: str | Path) -> dict[str, dict[str, Any]]:
    """Read the declared input parameters of a compiled KFP pipeline (IR YAML).

    Args:
        package_path: Path of the compiled pipeline YAML.

    Returns:
        Parameter name -> its IR spec (``parameterType``, and ``defaultValue`` /
        ``isOptional`` when the pipeline gives one). Empty when the pipeline takes no inputs.

    Raises:
        ValueError: If the file is missing, unreadable, not YAML, or not a compiled KFP pipeline.
    """
    import yaml  # PyYAML comes with the kfp extra

    path = Path(package_path)
    if not path.is_file():
        raise ValueError(
            f"pipeline package {str(path)!r} does not exist or is not a file; compile it with "
            "'python pipeline.py compile' (it writes pipeline.yaml)"
        )
    try:
        text = path.read_text(encoding="utf-8")
        # A compiled pipeline may carry a second document (the Kubernetes platform spec).
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read pipeline package {str(path)!r}: {error}") from error
    spec = documents[0] if documents else None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise ValueError(
            f"{str(path)!r} is not a compiled KFP pipeline (no 'pipelineInfo' and 'root' keys "
            "in its first YAML document); pass the YAML written by 'python pipeline.py compile'"
        )
    root = spec.get("root") or {}
    parameters = (root.get("inputDefinitions") or {}).get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError(f"{str(path)!r}: root.inputDefinitions.parameters is not a mapping")
    return {str(name): dict(value or {}) for name, value in parameters.items()}


def _coerce(name: str, value: Any, parameter_type: str | None, package_path: Path) -> Any:
    """Check one argument against its KFP parameter type; return it in the type KFP wants."""
    wanted = _KFP_PARAMETER_TYPES.get(parameter_type or "")
    ok = True
    if parameter_type == "STRING":
        ok = isinstance(value, str)
    elif parameter_type == "BOOLEAN":
        ok = isinstance(value, bool)
    elif parameter_type == "NUMBER_INTEGER":
        # Helm renders YAML numbers as floats; 42.0 is the integer 42.
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif parameter_type == "NUMBER_DOUBLE":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value)
    elif parameter_type == "LIST":
        ok = isinstance(value, list)
    elif parameter_type == "STRUCT":
        ok = isinstance(value, dict)
    if not ok:
        raise ValueError(
            f"--params: {name!r} must be {wanted} (pipeline {str(package_path)!r} declares it "
            f"{parameter_type}), got {value!r}"
        )
    return value


#: Smallest values of acgate pipeline inputs that only a later step would refuse.
_LEAST_VALUES = {"n_shards": 1}


def validate_params(
    params: Mapping[str, Any],
    inputs: Mapping[str, Mapping[str, Any]],
    *,
    package_path: str | Path = "pipeline.yaml",
) -> dict[str, Any]:
    """Check pipeline arguments against the pipeline's declared inputs.

    A ``None`` value means "use the pipeline's default" and is dropped, also under a name the
    package does not declare (one values file serves the full and the incremental pipeline:
    ``n_shards: null`` in the one, ``baseline_uri: null`` in the other).

    Args:
        params: Argument name -> value, as decoded from ``--params``.
        inputs: The pipeline's inputs, as returned by :func:`read_pipeline_inputs`.
        package_path: The package the inputs came from; quoted in error messages.

    Returns:
        The arguments to send: nulls dropped, integral floats for integer inputs made ints.

    Raises:
        ValueError: If a name is not an input of the pipeline, a value has the wrong type or is
            out of range (``n_shards`` below 1), or a required input (no default, not optional)
            has no value.
    """
    path = Path(package_path)
    unknown = sorted(name for name, value in params.items()
                     if name not in inputs and value is not None)
    if unknown:
        raise ValueError(
            f"--params names {unknown} are not inputs of pipeline {str(path)!r}; "
            f"its inputs are {sorted(inputs)}"
        )
    arguments = {
        name: _coerce(name, value, inputs[name].get("parameterType"), path)
        for name, value in params.items()
        if value is not None
    }
    for name, least in _LEAST_VALUES.items():
        if name in arguments and arguments[name] < least:
            raise ValueError(f"--params {name} must be >= {least}, got {arguments[name]!r} "
                             "(refused before the run, not after its training)")
    missing = sorted(
        name
        for name, spec in inputs.items()
        if name not in arguments and "defaultValue" not in spec and not spec.get("isOptional")
    )
    if missing:
        raise ValueError(
            f"--params lacks required inputs {missing} of pipeline {str(path)!r} "
            "(they have no default)"
        )
    return arguments


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m acgate.deploy.submit``."""
    parser = argparse.ArgumentParser(
        prog="python -m acgate.deploy.submit",
        description=(
            "Submit a compiled acgate KFP pipeline to a Kubeflow Pipelines API: one run now, "
            "or (--recurring) a KFP recurring run on a cron schedule."
        ),
    )
    parser.add_argument(
        "--host",
        required=True,
        help="KFP API endpoint, e.g. http://ml-pipeline.kubeflow.svc.cluster.local:8888",
    )
    parser.add_argument(
        "--package", required=True, type=Path, help="compiled pipeline YAML (pipeline.yaml)"
    )
    parser.add_argument(
        "--experiment", required=True, help="KFP experiment name (created if missing)"
    )
    parser.add_argument(
        "--params",
        default="{}",
        help="pipeline arguments as a JSON object; null means 'pipeline default' (default: {})",
    )
    parser.add_argument(
        "--recurring",
        action="store_true",
        help="register a KFP recurring run (needs --cron) instead of starting one run now",
    )
    parser.add_argument(
        "--cron",
        help="schedule of the recurring run: 5 fields ('0 3 * * *') or 6 (seconds first)",
    )
    parser.add_argument("--namespace", help="KFP namespace (multi-user Kubeflow only)")
    parser.add_argument("--run-name", help="display name of the run or recurring run")
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding a bearer token, re-read per request (projected ServiceAccount token)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> SubmitRequest:
    """Parse and validate the command line into a :class:`SubmitRequest` (offline).

    Args:
        argv: The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The validated request.

    Raises:
        SystemExit: For a malformed command line (argparse prints the usage; code 2).
        ValueError: For a bad host, a missing or invalid package file, ``--params`` that is not
            a JSON object or does not match the pipeline's inputs, or a missing/bad ``--cron``.
    """
    args = build_parser().parse_args(argv)
    host = args.host.strip()
    if not host.startswith(("http://", "https://")):
        raise ValueError(
            f"--host {args.host!r} must start with http:// or https://, e.g. "
            "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
        )
    experiment = args.experiment.strip()
    if not experiment:
        raise ValueError("--experiment is empty; give a KFP experiment name such as 'acgate'")
    if args.recurring and not args.cron:
        raise ValueError("--recurring needs --cron, e.g. --cron '0 3 * * *'")
    if args.cron and not args.recurring:
        raise ValueError(
            f"--cron {args.cron!r} is given without --recurring; add --recurring to register a "
            "KFP recurring run (a Kubernetes CronJob schedules one-off runs itself)"
        )
    cron = normalize_cron(args.cron) if args.recurring else None
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as error:
        raise ValueError(f"--params {args.params!r} is not valid JSON: {error}") from error
    if not isinstance(params, dict):
        raise ValueError(f"--params must be a JSON object, got {type(params).__name__}")
    if args.token_file is not None and not args.token_file.is_file():
        raise ValueError(f"--token-file {str(args.token_file)!r} does not exist or is not a file")
    inputs = read_pipeline_inputs(args.package)
    arguments = validate_params(params, inputs, package_path=args.package)
    return SubmitRequest(
        host=host.rstrip("/"),
        package_path=args.package,
        experiment=experiment,
        params=arguments,
        recurring=bool(args.recurring),
        cron=cron,
        namespace=args.namespace or None,
        run_name=args.run_name or None,
        token_file=args.token_file,
    )


def _pipeline_name(package_path: Path) -> str:
    """The ``pipelineInfo.name`` of a compiled pipeline (for recurring-run names)."""
    import yaml

    first = next(yaml.safe_load_all(package_path.read_text(encoding="utf-8")))
    return str(first["pipelineInfo"].get("name") or package_path.stem)


def submit(request: SubmitRequest, *, client: Any = None) -> str:
    """Submit the pipeline: one run now, or a KFP recurring run.

    A recurring run is registered with ``max_concurrency=1`` and ``no_catchup=True``: a gate
    run is never started twice at once, and missed ticks are not back-filled. Each call with
    ``recurring=True`` registers a new recurring run; delete the old one to change a schedule.

    Args:
        request: A validated request (see :func:`parse_args`).
        client: A configured ``kfp.Client`` to use; ``None`` builds one for ``request.host``
            (with ``request.token_file`` as bearer-token credentials when given).

    Returns:
        The id of the created run, or of the recurring run.

    Raises:
        SubmitError: If the KFP API cannot be reached or refuses the submission; the message
            names the host and the package.
    """
    import urllib3
    from kfp import Client
    from kfp_server_api.exceptions import ApiException

    failures = (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError)
    where = f"KFP API at {request.host!r} (package {str(request.package_path)!r})"
    try:
        if client is None:
            credentials = None
            if request.token_file is not None:
                from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

                credentials = ServiceAccountTokenVolumeCredentials(path=str(request.token_file))
            with warnings.catch_warnings():
                # kfp warns on every Client() that it needs KFP >= 2.0.0-beta.2; we know.
                warnings.filterwarnings(
                    "ignore", message="This client only works", category=FutureWarning
                )
                client = Client(
                    host=request.host,
                    namespace=request.namespace or "kubeflow",
                    credentials=credentials,
                )
        if request.recurring:
            experiment = client.create_experiment(
                name=request.experiment, namespace=request.namespace
            )
            recurring_run = client.create_recurring_run(
                experiment_id=experiment.experiment_id,
                job_name=request.run_name or _pipeline_name(request.package_path),
                cron_expression=request.cron,
                params=dict(request.params),
                pipeline_package_path=str(request.package_path),
                max_concurrency=1,
                no_catchup=True,
            )
            run_id = str(recurring_run.recurring_run_id)
            logger.info(
                "registered recurring run %s (cron %r) in experiment %r on %s",
                run_id,
                request.cron,
                request.experiment,
                request.host,
            )
            return run_id
        result = client.create_run_from_pipeline_package(
            str(request.package_path),
            arguments=dict(request.params),
            run_name=request.run_name,
            experiment_name=request.experiment,
            namespace=request.namespace,
        )
    except failures as error:
        raise SubmitError(f"submission to the {where} failed: {error}") from error
    run_id = str(result.run_id)
    logger.info("started run %s in experiment %r on %s", run_id, request.experiment, request.host)
    return run_id


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m acgate.deploy.submit``.

    Args:
        argv: The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success (the id is written to standard output), 2 for bad input, 1 when the KFP
        API failed.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        request = parse_args(argv)
    except ValueError as error:
        logger.error("%s", error)
        return EXIT_BAD_INPUT
    try:
        run_id = submit(request)
    except SubmitError as error:
        logger.error("%s", error)
        return EXIT_API_ERROR
    sys.stdout.write(f"{run_id}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
