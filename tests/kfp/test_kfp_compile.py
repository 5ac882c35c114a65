"""The pipeline compiles to KFP IR with all thirteen components, the per-shard and per-class
ParallelFor loops and the If;
every step that reads the data is keyed on the data's digest, and the digest is never cached.
The incremental pipeline compiles too, with the full pipeline's settings."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dataset-digest", "train-proxy", "plan-shards", "extract-activations",
          "collect-activations", "cluster", "analyze", "tag-verdict", "repair", "rescan",
          "verdict", "gate", "publish-baseline")
#: The steps that talk to MLflow (the NetworkPolicy label, the MLflow credentials).
MLFLOW_EXECUTORS = ["exec-analyze", "exec-gate", "exec-publish-baseline", "exec-repair",
                    "exec-rescan", "exec-tag-verdict"]
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
    spec = next(yaml.safe_load_all(out.read_text()))  # then the Kubernetes platform spec
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(e.removeprefix("exec-") for e in executors) == sorted(STAGES)
    for executor in executors.values():
        assert executor["container"]["image"].startswith("ghcr.io/acgate/acgate:")
    tasks = dict(_tasks(spec["components"], spec["root"]["dag"]))
    assert set(STAGES) <= set(tasks)
    loops = {t["componentRef"]["name"]: t for t in tasks.values() if "parameterIterator" in t}
    assert len(loops) == 2
    components = spec["components"]
    by_task = {next(iter(components[name]["dag"]["tasks"])): loop for name, loop in loops.items()}
    # Extraction fans out over the planned shards, at most SHARD_PARALLELISM at once; the
    # clustering over the classes the collection returns.
    shards, classes = by_task["extract-activations"], by_task["cluster"]
    assert shards["parameterIterator"]["items"]["inputParameter"].endswith("Output")
    assert shards["iteratorPolicy"] == {"parallelismLimit": 8}
    assert shards["inputs"]["parameters"]["pipelinechannel--plan-shards-Output"][
        "taskOutputParameter"]["producerTask"] == "plan-shards"
    assert classes["inputs"]["parameters"]["pipelinechannel--collect-activations-Output"][
        "taskOutputParameter"]["producerTask"] == "collect-activations"
    collect = components["comp-collect-activations"]["inputDefinitions"]["artifacts"]
    assert collect["shards"].get("isArtifactList") is True
    n_shards = spec["root"]["inputDefinitions"]["parameters"]["n_shards"]
    assert (n_shards["defaultValue"], n_shards["parameterType"]) == (1, "NUMBER_INTEGER")
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values()
                  if "condition" in t.get("triggerPolicy", {})]
    assert any("verdict" in c and "clean" in c for c in conditions)
    # The gate sits under the "clean" branch, the repair under the other one.
    clean_branch = [c for name, c in components.items() if "dag" in c
                    and "gate" in c["dag"]["tasks"]]
    poisoned_branch = [c for name, c in components.items() if "dag" in c
                       and "repair" in c["dag"]["tasks"]]
    assert clean_branch and poisoned_branch and clean_branch != poisoned_branch
    # Poisoned: repair -> rescan of the repaired data -> the verdict step that fails the run;
    # nothing is promoted there.
    # A clean scan publishes its baseline (for the incremental pipeline) before the gate moves
    # the alias (a models:/<model>@<alias> baseline never names a version without one).
    (clean,) = clean_branch
    assert set(clean["dag"]["tasks"]) == {"gate", "publish-baseline"}
    assert "publish-baseline" in clean["dag"]["tasks"]["gate"]["dependentTasks"]
    publish = clean["dag"]["tasks"]["publish-baseline"]["inputs"]["artifacts"]
    assert {key: publish[key]["componentInputArtifact"] for key in publish} == {
        "scan": "pipelinechannel--analyze-scan", "samples": "pipelinechannel--analyze-samples",
        "activations": "pipelinechannel--collect-activations-activations",
        "model": "pipelinechannel--train-proxy-model"}
    (poisoned,) = poisoned_branch
    else_tasks = poisoned["dag"]["tasks"]
    assert set(else_tasks) == {"repair", "rescan", "verdict"}
    rescanned = else_tasks["rescan"]["inputs"]["artifacts"]["repaired_dataset"]
    assert rescanned["taskOutputArtifact"] == {"producerTask": "repair",
                                               "outputArtifactKey": "cleaned_dataset"}
    assert set(else_tasks["verdict"]["dependentTasks"]) == {"repair", "rescan"}
    verdict_inputs = else_tasks["verdict"]["inputs"]["parameters"]
    assert verdict_inputs["rescan_verdict"]["taskOutputParameter"] == {
        "producerTask": "rescan", "outputParameterKey": "verdict"}
    assert "fail_on_poisoned" in verdict_inputs
    failing = spec["root"]["inputDefinitions"]["parameters"]["fail_on_poisoned"]
    assert (failing["defaultValue"], failing["parameterType"]) == (True, "BOOLEAN")
    # The verdict is tagged onto the model version before either branch runs.
    root_tasks = spec["root"]["dag"]["tasks"]
    assert root_tasks["tag-verdict"]["dependentTasks"] == ["analyze"]
    branches = [t for t in root_tasks.values() if "tag-verdict" in t.get("dependentTasks", [])]
    assert len(branches) == 1 and branches[0]["componentRef"]["name"].startswith(
        "comp-condition-branches-")
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

    spec = next(yaml.safe_load_all(pipeline.compile_pipeline(tmp_path / "p.yaml").read_text()))
    expected = {"source_share_threshold": SOURCE_SHARE_THRESHOLD,
                "nested_source_share_threshold": NESTED_SOURCE_SHARE_THRESHOLD,
                "confusion_threshold": CONFUSION_THRESHOLD}
    for where in (spec["root"], spec["components"]["comp-analyze"]):
        parameters = where["inputDefinitions"]["parameters"]
        assert {name: parameters[name]["defaultValue"] for name in expected} == expected


def _compiled(tmp_path, **options):
    sys.path.insert(0, str(ROOT))
    import pipeline

    path = pipeline.compile_pipeline(tmp_path / "p.yaml", **options)
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _parameter_source(components, dag, task_name, parameter, parents=()):
    """The task whose output feeds ``parameter`` of ``task_name`` (through nested DAGs)."""
    spec = dag["tasks"][task_name]["inputs"]["parameters"].get(parameter)
    if spec is None:
        return None
    if "taskOutputParameter" in spec:
        return spec["taskOutputParameter"]["producerTask"]
    if not parents:
        return f"pipeline input {spec['componentInputParameter']}"
    parent_dag, parent_task = parents[-1]
    return _parameter_source(components, parent_dag, parent_task,
                             spec["componentInputParameter"], parents[:-1])


def _tasks_with_parents(components, dag, parents=()):
    """(task name, task spec, its DAG, the chain of (DAG, task) it is nested in)."""
    for name, task in dag.get("tasks", {}).items():
        yield name, task, dag, parents
        nested = components[task["componentRef"]["name"]]
        if "dag" in nested:
            yield from _tasks_with_parents(components, nested["dag"], (*parents, (dag, name)))


def test_every_step_that_reads_the_data_is_keyed_on_its_digest(tmp_path):
    spec = _compiled(tmp_path)[0]
    components = spec["components"]
    tasks = dict(_tasks(components, spec["root"]["dag"]))
    readers = []
    for name, task, dag, parents in _tasks_with_parents(components, spec["root"]["dag"]):
        component = components[task["componentRef"]["name"]]
        if name == "dataset-digest" or "dag" in component:
            continue
        inputs = component.get("inputDefinitions", {})
        # plan-shards and collect-activations read only the row count in the staged copy's
        # footer, and extract-activations runs in a loop (kfp's local runner cannot pass a
        # task's output into one): their cache keys hold the staged copy, which is new
        # whenever train-proxy ran on new bytes; extract-activations checks the digest
        # train-proxy recorded on it.
        if name in ("plan-shards", "collect-activations", "extract-activations"):
            continue
        if "dataset_uri" in inputs.get("parameters", {}) or "dataset" in inputs.get(
                "artifacts", {}):
            readers.append(name)
            assert _parameter_source(components, dag, name, "dataset_sha256",
                                     parents) == "dataset-digest", name
    assert sorted(readers) == ["analyze", "repair", "train-proxy"]
    # The digest sees today's bytes: never cached. So does the gate (MLflow's current state).
    assert tasks["dataset-digest"].get("cachingOptions", {}).get("enableCache") is not True
    assert tasks["gate"].get("cachingOptions", {}).get("enableCache") is not True
    cached = {name for name, task in tasks.items()
              if task.get("cachingOptions", {}).get("enableCache") is True}
    # tag-verdict acts on MLflow's state and verdict reports the outcome: every run.
    assert cached == {"train-proxy", "plan-shards", "extract-activations",
                      "collect-activations", "cluster", "analyze", "repair", "rescan",
                      "publish-baseline"}
    # The scan's digest is a pipeline output.
    outputs = spec["root"]["dag"]["outputs"]["parameters"]
    assert outputs["dataset_sha256"]["valueFromParameter"]["producerSubtask"] == "dataset-digest"


def test_mlflow_steps_carry_the_network_policy_label(tmp_path):
    documents = _compiled(tmp_path)
    assert len(documents) == 2  # the IR and the Kubernetes platform spec
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == MLFLOW_EXECUTORS
    for config in executors.values():
        assert config["podMetadata"]["labels"] == {"acgate.io/mlflow-client": "true"}
        assert "secretAsEnv" not in config  # no credentials unless asked for


def test_compile_pins_the_image_by_digest_and_passes_mlflow_credentials(tmp_path):
    from kfp import components

    digest = "sha256:" + hashlib.sha256(b"acgate image").hexdigest()
    out = tmp_path / "pinned.yaml"
    done = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "compile", "--out",
                           str(out), "--image-digest", digest, "--mlflow-credentials-secret",
                           "acgate-mlflow-client"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"]
              for e in documents[0]["deploymentSpec"]["executors"].values()}
    assert images == {f"ghcr.io/acgate/acgate@{digest}"}
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in MLFLOW_EXECUTORS:
        assert executors[name]["secretAsEnv"] == [{
            "secretName": "acgate-mlflow-client",
            "keyToEnv": [{"secretKey": "username", "envVar": "MLFLOW_TRACKING_USERNAME"},
                         {"secretKey": "password", "envVar": "MLFLOW_TRACKING_PASSWORD"}]}]
        assert executors[name]["podMetadata"]["labels"] == {"acgate.io/mlflow-client": "true"}
    # kfp itself reads the rewritten package (IR and platform spec) back
    loaded = components.load_component_from_file(str(out))
    gate = loaded.platform_spec.platforms["kubernetes"].deployment_spec.executors["exec-gate"]
    assert gate["secretAsEnv"][0]["secretName"] == "acgate-mlflow-client"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--image-digest", "sha256:abc", "64 lowercase hex"),
    ("--image-digest", "latest", "64 lowercase hex"),
    ("--mlflow-credentials-secret", "Bad_Name", "not a Kubernetes Secret name"),
    ("--dataset-credentials-secret", "s3 keys", "not a Kubernetes Secret name"),
])
def test_compile_refuses_a_bad_pin_or_secret(tmp_path, option, value, message):
    done = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "compile", "--out",
                           str(tmp_path / "p.yaml"), option, value], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_compile_passes_object_store_credentials_to_the_steps_that_read_the_uri(tmp_path):
    out = tmp_path / "s3.yaml"
    done = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "compile", "--out",
                           str(out), "--dataset-credentials-secret", "acgate-s3",
                           "--mlflow-credentials-secret", "acgate-mlflow-client"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(out.read_text()))
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    s3 = {"secretName": "acgate-s3",
          "keyToEnv": [{"secretKey": key, "envVar": key}
                       for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]}
    # Only the steps that open dataset_uri; the others read the staged copy.
    readers = {name for name, config in executors.items()
               if any(entry["secretName"] == "acgate-s3"
                      for entry in config.get("secretAsEnv", []))}
    assert readers == {"exec-dataset-digest", "exec-train-proxy"}
    for name in readers:
        assert executors[name]["secretAsEnv"] == [s3]
    assert executors["exec-gate"]["secretAsEnv"][0]["secretName"] == "acgate-mlflow-client"


def _quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("10Gi", "512Mi", "4G") in bytes."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
             "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
    for unit in sorted(units, key=len, reverse=True):
        if quantity.endswith(unit):
            return int(quantity[: -len(unit)]) * units[unit]
    return int(quantity)


def test_every_step_requests_and_limits_cpu_and_memory_from_pipeline_inputs(tmp_path):
    from acgate.io.datasets import DEFAULT_MAX_DECODED_BYTES

    sys.path.insert(0, str(ROOT))
    import pipeline

    spec = _compiled(tmp_path)[0]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    names = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    defaults = {name: inputs[name]["defaultValue"] for name in names}
    assert defaults == {"cpu_request": "1", "cpu_limit": "2", "memory_request": "4Gi",
                        "memory_limit": "10Gi"}
    # The limit holds the data budget the steps enforce (max_decoded_bytes) plus the runtime.
    assert inputs["max_decoded_bytes"]["defaultValue"] == DEFAULT_MAX_DECODED_BYTES
    assert _quantity_bytes(defaults["memory_limit"]) >= (
        DEFAULT_MAX_DECODED_BYTES + pipeline.STEP_MEMORY_OVERHEAD_BYTES)
    assert _quantity_bytes(defaults["memory_request"]) <= _quantity_bytes(defaults["memory_limit"])
    fields = {"resourceCpuRequest": "cpu_request", "resourceCpuLimit": "cpu_limit",
              "resourceMemoryRequest": "memory_request", "resourceMemoryLimit": "memory_limit"}
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(e.removeprefix("exec-") for e in executors) == sorted(STAGES)
    for name, executor in executors.items():
        resources = executor["container"]["resources"]
        for field, parameter in fields.items():
            # KFP backend >= 2.4.0 resolves the placeholder from the pipeline input
            assert resources[field] == (
                f"{{{{$.inputs.parameters['pipelinechannel--{parameter}']}}}}"), (name, field)
    # ...and every task is wired to the pipeline inputs, through the nested DAGs
    components = spec["components"]
    for task_name, _task, dag, parents in _tasks_with_parents(components, spec["root"]["dag"]):
        if task_name not in STAGES:
            continue
        for parameter in names:
            source = _parameter_source(components, dag, task_name,
                                       f"pipelinechannel--{parameter}", parents)
            assert source == f"pipeline input {parameter}", (task_name, parameter, source)


def test_the_incremental_pipeline_compiles_with_the_full_pipelines_settings(tmp_path):
    from acgate.deploy.submit import read_pipeline_inputs, validate_params

    sys.path.insert(0, str(ROOT))
    import pipeline

    documents = _compiled(tmp_path, incremental=True, dataset_credentials_secret="acgate-s3")
    spec = documents[0]
    assert spec["pipelineInfo"]["name"] == pipeline.INCREMENTAL_PIPELINE_NAME
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-dataset-digest", "exec-incremental-scan", "exec-repair",
                                 "exec-rescan", "exec-verdict"]
    # One configuration: every input of the full pipeline but its fan-out and promotion,
    # with the same defaults.
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    full = _compiled(tmp_path / "full")[0]["root"]["inputDefinitions"]["parameters"]
    # No model is tagged or promoted from a partition's scan.
    assert set(full) - set(inputs) == {"n_shards", "alias", "model_name", "model_version"}
    assert set(inputs) - set(full) == {"baseline_uri", "fallback"}
    own = {"dataset_uri", "mlflow_tracking_uri", "fail_on_poisoned"}
    for name in set(full) & set(inputs):
        keep = ("description",) if name not in own else ()
        assert ({k: v for k, v in inputs[name].items() if k != "description" or keep}
                == {k: v for k, v in full[name].items() if k != "description" or keep}), name
    assert "baseline_uri" in inputs["baseline_uri"]["description"] or "runs:/" in inputs[
        "baseline_uri"]["description"]
    # The partition is keyed on its digest, never cached (a baseline URI may be replaced).
    components = spec["components"]
    tasks = dict(_tasks(components, spec["root"]["dag"]))
    assert tasks["incremental-scan"]["cachingOptions"].get("enableCache") is not True
    assert tasks["rescan"]["cachingOptions"].get("enableCache") is not True
    # The rescan judges against the very baseline the scan used (a models:/ alias resolved
    # once, by incremental_scan).
    sub_call = spec["root"]["dag"]["tasks"]["partition-not-clean"]["inputs"]["parameters"]
    assert sub_call["baseline_uri"]["taskOutputParameter"] == {
        "producerTask": "incremental-scan", "outputParameterKey": "baseline"}
    for name, _task, dag, parents in _tasks_with_parents(components, spec["root"]["dag"]):
        if name in ("incremental-scan", "repair"):
            assert _parameter_source(components, dag, name, "dataset_sha256",
                                     parents) == "dataset-digest", name
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labelled = sorted(n for n, c in platform.items() if "podMetadata" in c)
    assert labelled == ["exec-incremental-scan", "exec-repair", "exec-rescan"]
    # The repair and the failing verdict only when the partition is not clean, in a sub-DAG
    # whose condition reads the scan's verdict as an input.
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values()
                  if "condition" in t.get("triggerPolicy", {})]
    assert conditions == ["inputs.parameter_values['pipelinechannel--scan_verdict'] != 'clean'"]
    # The sub-DAG's optional inputs stay optional (KFP omits a null argument on the cluster).
    sub = components["comp-partition-not-clean"]["inputDefinitions"]["parameters"]
    for name in ("mlflow_tracking_uri", "epochs", "max_decoded_bytes", "id_column",
                 "exre_epochs", "size_threshold"):
        assert sub[name].get("isOptional") is True, name
    verdict_inputs = next(c for c in components.values() if "dag" in c
                          and "verdict" in c["dag"]["tasks"])["dag"]["tasks"]["verdict"]
    assert verdict_inputs["inputs"]["parameters"]["partition"]["runtimeValue"] == {
        "constant": True}
    readers = sorted(n for n, c in platform.items() if "secretAsEnv" in c)
    # The rescan reads baseline_uri too (an s3:// baseline folder).
    assert readers == ["exec-dataset-digest", "exec-incremental-scan", "exec-rescan"]
    path = pipeline.compile_pipeline(tmp_path / "inc.yaml", incremental=True)
    sent = validate_params({"dataset_uri": "s3://b/part.parquet", "baseline_uri": "runs:/abc/"
                            "baseline", "n_shards": None}, read_pipeline_inputs(path),
                           package_path=path)
    assert sent == {"dataset_uri": "s3://b/part.parquet", "baseline_uri": "runs:/abc/baseline"}
