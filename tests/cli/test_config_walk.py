"""One configuration: every declared setting, checked wherever it appears (issue 17).

The walk goes over :class:`acgate.scan.ScanConfig`'s declared fields (the detector's
:class:`acgate.core.config.DetectorConfig` plus the proxy's) and checks each one's name and
default in: :func:`acgate.core.detect` and :class:`acgate.core.ActivationClustering`, the CLI,
the pipeline's inputs, the components' parameters, the chart's ``pipeline.parameters``, the
MLflow params of a real scan run and the thresholds recorded in ``classes.parquet``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path

import mlflow
import pytest
import yaml

from acgate.core import ActivationClustering, detect
from acgate.core.analyses import Thresholds
from acgate.core.config import DetectorConfig, default_of, settings
from acgate.scan import COLUMN_SETTINGS, ScanConfig

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = list(settings(DetectorConfig))
ALL = list(settings(ScanConfig))
PIPELINE = [item for item in ALL if item.metadata["pipeline"]]
#: The sklearn-style name of a setting in the core's signatures.
CORE_NAMES = {"seed": "random_state"}


def kfp_default(item: dataclasses.Field) -> object:
    """How a KFP signature writes a setting's default (``n_clusters``: text, ``""`` = None)."""
    default = default_of(item)
    if item.name == "n_clusters":
        return "" if default is None else str(default)
    return default


def signature_defaults(function) -> dict[str, object]:
    function = getattr(function, "python_func", function)  # a KFP component
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b)
    return a == b and type(a) is type(b) or (a == b and {type(a), type(b)} <= {int, float})


@pytest.mark.parametrize("function", [detect, ActivationClustering.__init__],
                         ids=["detect", "ActivationClustering"])
def test_core_signatures_take_every_detector_setting_with_its_default(function):
    defaults = signature_defaults(function)
    for item in DETECTOR:
        name = CORE_NAMES.get(item.name, item.name)
        assert name in defaults, f"{function.__qualname__} lacks setting {name!r}"
        assert same(defaults[name], default_of(item)), (name, defaults[name], default_of(item))


def test_detect_kwargs_are_exactly_the_declared_detector_settings():
    kwargs = ScanConfig().detect_kwargs()
    assert set(kwargs) == {CORE_NAMES.get(i.name, i.name) for i in DETECTOR}
    detect_parameters = set(inspect.signature(detect).parameters)
    assert set(kwargs) <= detect_parameters


def test_cli_flags_parse_to_the_configuration_defaults():
    from acgate.cli import _config, build_parser

    parser = build_parser()
    args = parser.parse_args(["scan", "data.parquet", "--out", "out"])
    for item in ALL:
        if item.metadata["flag"] == "":
            continue
        assert hasattr(args, item.name), f"acgate scan has no flag for {item.name!r}"
    assert _config(args) == ScanConfig()
    detect_args = parser.parse_args(["detect", "acts.parquet", "--out", "out"])
    for item in DETECTOR:
        assert hasattr(detect_args, item.name), f"acgate detect has no flag for {item.name!r}"
    assert _config(detect_args) == ScanConfig()


def test_cli_flags_set_every_setting():
    from acgate.cli import _config, build_parser

    argv = ["scan", "data.parquet", "--out", "out", "--reducer", "ica", "--n-components", "7",
            "--n-clusters", "3", "--analysis", "exre", "--size-threshold", "0.4",
            "--silhouette-threshold", "0.2", "--exre-threshold", "0.9",
            "--source-share-threshold", "0.6", "--nested-source-share-threshold", "0.8",
            "--confusion-threshold", "0.05", "--overlap-threshold", "0.06",
            "--redraw-components", "7", "--segment-by", "prediction",
            "--min-class-size", "12", "--seed", "3", "--proxy", "mlp", "--epochs", "4",
            "--exre-epochs", "2", "--exre-max-rows", "30000", "--batch-size", "32", "--lr",
            "0.01", "--hidden", "64", "--model", "m.pt", "--model-module", "a.b:C", "--layer",
            "fc1", "--progress",
            "--max-decoded-gb", "2", "--max-tokens", "100", "--device", "cpu",
            "--label-column", "digit", "--image-column", "png", "--text-column", "review",
            "--id-column", "uid"]
    config = _config(build_parser().parse_args(argv))
    for item in ALL:
        assert getattr(config, item.name) != default_of(item), f"no flag changed {item.name}"


def pipeline_components():
    import sys

    sys.path.insert(0, str(ROOT))
    try:
        from components.analyze.component import analyze
        from components.cluster.component import cluster
        from components.extract_activations.component import extract_activations
        from components.incremental_scan.component import incremental_scan
        from components.repair.component import repair
        from components.rescan.component import rescan
        from components.train_proxy.component import train_proxy
        from pipeline import acgate_incremental_pipeline, acgate_pipeline
    finally:
        sys.path.remove(str(ROOT))
    proxy = [i for i in PIPELINE if i.metadata["stage"] == "proxy"]
    clustering = [i for i in PIPELINE if i.metadata["stage"] == "cluster"]
    seed = [i for i in PIPELINE if i.name == "seed"]
    by_name = {i.name: i for i in PIPELINE}
    return {
        "pipeline": (acgate_pipeline, PIPELINE),
        "train_proxy": (train_proxy, proxy),
        "extract_activations": (extract_activations,
                                [by_name[name] for name in ("segment_by", "max_decoded_bytes",
                                                            *COLUMN_SETTINGS)]),
        "cluster": (cluster, clustering + seed),
        "analyze": (analyze, PIPELINE),
        "repair": (repair, proxy),
        "rescan": (rescan, PIPELINE),
        "incremental_pipeline": (acgate_incremental_pipeline, PIPELINE),
        "incremental_scan": (incremental_scan, PIPELINE),
    }


@pytest.mark.parametrize("name", ["pipeline", "train_proxy", "extract_activations", "cluster",
                                  "analyze", "repair", "rescan", "incremental_pipeline",
                                  "incremental_scan"])
def test_pipeline_and_components_take_their_settings_with_the_same_defaults(name):
    function, expected = pipeline_components()[name]
    defaults = signature_defaults(function.pipeline_func if hasattr(function, "pipeline_func")
                                  else function)
    for item in expected:
        assert item.name in defaults, f"{name} lacks setting {item.name!r}"
        assert same(defaults[item.name], kfp_default(item)), (
            name, item.name, defaults[item.name], kfp_default(item))


def test_pipeline_config_rebuilds_the_configuration_from_kfp_defaults():
    from acgate.stages import pipeline_config

    values = {item.name: kfp_default(item) for item in PIPELINE}
    assert pipeline_config(**values) == ScanConfig()
    with pytest.raises(ValueError, match="unknown setting"):
        pipeline_config(no_such_setting=1)


def test_chart_values_name_every_pipeline_setting():
    values = yaml.safe_load((ROOT / "charts/acgate/values.yaml").read_text(encoding="utf-8"))
    parameters = values["pipeline"]["parameters"]
    for item in PIPELINE:
        assert item.name in parameters, f"charts/acgate/values.yaml lacks {item.name!r}"
        value = parameters[item.name]
        # null leaves the pipeline's own default (checked above) in force.
        assert value is None or same(value, default_of(item)), (item.name, value)


def test_a_scan_run_records_every_setting_as_an_mlflow_param(poisoned_cli_scan):
    client = mlflow.MlflowClient(tracking_uri=poisoned_cli_scan.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(experiments, max_results=1)[0]
    params = run.data.params
    for item in ALL:
        # A detector setting the result records under its own name with the same value is
        # logged once, under that name; every other setting as scan.<name> (both appear only
        # when the setting resolved to another value, e.g. analysis auto -> exre).
        own, key = item.name, f"scan.{item.name}"
        assert key in params or own in params, f"the scan run lacks param {key!r}"
        if key in params and own in params:
            assert params[key] != params[own], f"the scan run logs {item.name!r} twice"
        key = key if key in params else own
        default = default_of(item)
        if item.name != "seed" and default is not None and item.metadata["stage"] != "local":
            assert params[key] == str(default), (key, params[key], default)


def test_recorded_thresholds_are_the_declared_threshold_settings(poisoned_cli_scan):
    from acgate.io.results import read_classes

    names = {f.name for f in dataclasses.fields(Thresholds)}
    declared = {i.name.removesuffix("_threshold") for i in DETECTOR
                if i.name.endswith("_threshold")}
    assert names == declared
    classes = read_classes(poisoned_cli_scan.out / "classes.parquet")
    recorded = classes.iloc[0]
    config = ScanConfig()
    for name in names - {"size"}:  # size resolves from None (0.45 under exre)
        column = f"threshold_{name}"
        value = recorded[column] if column in classes else recorded["thresholds"][name]
        assert same(float(value), float(getattr(config, f"{name}_threshold"))), name
