"""The pipeline compiles to KFP IR with all six components, the per-class ParallelFor and the If."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("train-proxy", "extract-activations", "cluster", "analyze", "repair", "gate")
HELM_INPUTS = ("dataset_uri", "size_threshold", "silhouette_threshold", "analysis", "seed",
               "model_name", "model_version", "mlflow_tracking_uri")


def _tasks(components, dag):
    """Every task of a DAG and of its nested DAGs: (task name, task spec)."""
    for name, task in dag.get("tasks", {}).items():
        yield name, task
        nested = components[task["componentRef"]["name"]]
        if "dag" in nested:
            yield from _tasks(components, nested["dag"])


def test_compile_cli_writes_pipeline_with_all_constructs(tmp_path):
    out = tmp_path / "pipeline.yaml"
    done = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "compile", "--out",
                           str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    spec = yaml.safe_load(out.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(e.removeprefix("exec-") for e in executors) == sorted(STAGES)
    for executor in executors.values():
        assert executor["container"]["image"].startswith("ghcr.io/acgate/acgate:")
    tasks = dict(_tasks(spec["components"], spec["root"]["dag"]))
    assert set(STAGES) <= set(tasks)
    loops = [t for t in tasks.values() if "parameterIterator" in t]
    assert len(loops) == 1
    assert loops[0]["parameterIterator"]["items"]["inputParameter"].endswith("Output")
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values()
                  if "condition" in t.get("triggerPolicy", {})]
    assert any("verdict" in c and "clean" in c for c in conditions)
    # The gate sits under the "clean" branch, the repair under the other one.
    components = spec["components"]
    clean_branch = [c for name, c in components.items() if "dag" in c
                    and "gate" in c["dag"]["tasks"]]
    poisoned_branch = [c for name, c in components.items() if "dag" in c
                       and "repair" in c["dag"]["tasks"]]
    assert clean_branch and poisoned_branch and clean_branch != poisoned_branch
    analyze_inputs = components["comp-analyze"]["inputDefinitions"]["artifacts"]
    assert analyze_inputs["clusterings"].get("isArtifactList") is True
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(HELM_INPUTS) <= set(inputs)


def test_compiled_inputs_pass_the_submitter_checks(tmp_path):
    from acgate.deploy.submit import read_pipeline_inputs, validate_params

    sys.path.insert(0, str(ROOT))
    import pipeline

    path = pipeline.compile_pipeline(tmp_path / "p.yaml")
    inputs = read_pipeline_inputs(path)
    # The Helm chart's default parameters: nulls mean "pipeline default".
    chart_defaults = {"dataset_uri": "s3://bucket/train.parquet", "size_threshold": None,
                      "silhouette_threshold": None, "analysis": None, "seed": 0,
                      "model_name": None, "model_version": None, "mlflow_tracking_uri": None}
    sent = validate_params(chart_defaults, inputs, package_path=path)
    assert sent == {"dataset_uri": "s3://bucket/train.parquet", "seed": 0}
    sent = validate_params({"dataset_uri": "x", "size_threshold": 0.35, "model_version": "3",
                            "silhouette_threshold": 0.1, "analysis": "exre"}, inputs,
                           package_path=path)
    assert sent["size_threshold"] == 0.35 and sent["model_version"] == "3"


def test_compiled_exre_defaults_are_the_core_defaults(tmp_path):
    # KFP needs the defaults as literals in the pipeline and component signatures; they must
    # not drift from the library's (a scheduled run would judge by other thresholds than a scan).
    from acgate.core.detect import (
        CONFUSION_THRESHOLD,
        NESTED_SOURCE_SHARE_THRESHOLD,
        SOURCE_SHARE_THRESHOLD,
    )

    sys.path.insert(0, str(ROOT))
    import pipeline

    spec = yaml.safe_load(pipeline.compile_pipeline(tmp_path / "p.yaml").read_text())
    expected = {"source_share_threshold": SOURCE_SHARE_THRESHOLD,
                "nested_source_share_threshold": NESTED_SOURCE_SHARE_THRESHOLD,
                "confusion_threshold": CONFUSION_THRESHOLD}
    for where in (spec["root"], spec["components"]["comp-analyze"]):
        parameters = where["inputDefinitions"]["parameters"]
        assert {name: parameters[name]["defaultValue"] for name in expected} == expected
