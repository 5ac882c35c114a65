"""The Helm chart: rendered by Helm's own engine, validated against the Kubernetes schemas,
checked for the security settings of every pod and container and for inlined secrets."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import CHART, REPO, manifests, pod_specs, render

from acgate.deploy.submit import parse_args


@pytest.fixture(scope="session")
def kubernetes_validate():
    return pytest.importorskip(
        "kubernetes_validate",
        reason="schema validation needs kubernetes-validate (dev extra: pip install -e '.[dev]')",
    )


# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema shipped.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
PASSWORD_SENTINEL = "do-not-inline-this-password-7f3a"


@pytest.fixture(scope="module")
def base_values(helm, compiled_pipeline) -> dict[str, Any]:
    """Default values plus what an install must pass: the compiled pipeline and a dataset."""
    # Exactly what `--set-file pipeline.yaml=<file>` gives Helm.
    values = helm.parse_set_file(f"pipeline.yaml={compiled_pipeline}")
    values["pipeline"]["parameters"] = {"dataset_uri": "s3://acgate-data/train.parquet"}
    return values


@pytest.fixture(scope="module")
def postgres_values(base_values) -> dict[str, Any]:
    return {
        **base_values,
        "mlflow": {
            "enabled": True,
            "backend": "postgres",
            "workers": 2,
            "postgres": {
                "host": "postgres.db.svc.cluster.local",
                "passwordSecretRef": {"name": "mlflow-postgres", "key": "password"},
            },
            "artifactsDestination": "s3://acgate-mlflow/artifacts",
            "extraEnvFromSecrets": ["mlflow-s3"],
        },
        "kfp": {"namespace": "team-a", "serviceAccountToken": {"enabled": True}},
        "imagePullSecrets": [{"name": "ghcr"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    }


DIGEST = "sha256:" + "5f" * 32
MLFLOW_DIGEST = "sha256:" + "a0" * 32


def _auth_values(base_values):
    """MLflow with basic auth, both images pinned by digest, pipeline pods in team-a."""
    return {
        **base_values,
        "image": {"digest": DIGEST},
        "kfp": {"namespace": "team-a"},
        "mlflow": {
            "enabled": True,
            "image": {"repository": "ghcr.io/mlflow/mlflow", "digest": MLFLOW_DIGEST},
            "auth": {"enabled": True, "secretRef": {"name": "mlflow-admin"}},
            "networkPolicy": {
                "clientNamespaces": ["batch"],
                "extraFrom": [{"ipBlock": {"cidr": "10.1.0.0/16"}}],
            },
        },
    }


SCENARIOS = {
    "defaults": lambda b, p: b,
    "mlflow-auth-digest": lambda b, p: _auth_values(b),
    "mlflow-sqlite": lambda b, p: {**b, "mlflow": {"enabled": True}},
    "mlflow-sqlite-no-persistence": lambda b, p: {
        **b,
        "mlflow": {"enabled": True, "persistence": {"enabled": False}},
    },
    "mlflow-postgres": lambda b, p: p,
    "mlflow-only": lambda b, p: {"cronJob": {"enabled": False}, "mlflow": {"enabled": True}},
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request, helm, base_values, postgres_values):
    values = SCENARIOS[request.param](base_values, postgres_values)
    rendered = render(helm, values)
    return request.param, values, rendered, manifests(rendered)


def kinds(documents):
    return sorted(doc["kind"] for doc in documents)


def test_defaults_render_the_scheduled_submitter(helm, base_values):
    documents = manifests(render(helm, base_values))
    assert kinds(documents) == ["ConfigMap", "CronJob", "ServiceAccount"]
    cronjob = next(doc for doc in documents if doc["kind"] == "CronJob")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acgate/acgate:0.1.0"
    assert container["command"] == ["python", "-m", "acgate.deploy.submit"]


def test_postgres_values_render_mlflow(helm, postgres_values):
    documents = manifests(render(helm, postgres_values))
    assert kinds(documents) == [
        "ConfigMap",
        "CronJob",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Service",
        "ServiceAccount",
    ]
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (
        "--backend-store-uri=postgresql://mlflow@postgres.db.svc.cluster.local:5432/mlflow?sslmode=prefer"
        in container["args"]
    )
    password = next(env for env in container["env"] if env["name"] == "PGPASSWORD")
    assert password == {
        "name": "PGPASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-postgres", "key": "password"}},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-s3"}}]


def test_every_manifest_is_valid_kubernetes(scenario, kubernetes_validate):
    name, _, _, documents = scenario
    assert documents, name
    for version in KUBERNETES_VERSIONS:
        for doc in documents:
            # strict: unknown fields (typos) fail as well as wrong types and missing fields
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_a_broken_manifest(helm, base_values, kubernetes_validate):
    cronjob = next(d for d in manifests(render(helm, base_values)) if d["kind"] == "CronJob")
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="'resource' was unexpected"):
        kubernetes_validate.validate(cronjob, KUBERNETES_VERSIONS[0], strict=True)


def test_every_pod_and_container_is_locked_down(scenario):
    name, _, _, documents = scenario
    specs = pod_specs(documents)
    assert specs, f"{name}: no workload rendered"
    for workload, spec in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, workload
        assert pod.get("runAsUser") == 10001, workload
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, workload
        assert spec.get("automountServiceAccountToken") is False, workload
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        containers = spec.get("initContainers", []) + spec["containers"]
        for container in containers:
            where = f"{workload}/{container['name']}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert context.get("privileged", False) is False, where
            assert context.get("runAsUser", 10001) == 10001, where
            for kind in ("requests", "limits"):
                resources = container.get("resources", {}).get(kind, {})
                assert {"cpu", "memory"} <= set(resources), f"{where}: {kind} {resources}"
            # a read-only root needs a writable /tmp
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, where


SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|API_?KEY|ACCESS_KEY", re.IGNORECASE)


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
    else:
        yield path, node


def test_no_secret_value_is_inlined(scenario):
    name, _, rendered, documents = scenario
    assert "Secret" not in kinds(documents), f"{name}: the chart must not create Secrets"
    for workload, spec in pod_specs(documents):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, f"{workload}: {env['name']} is inlined"
                    assert set(env["valueFrom"]) == {"secretKeyRef"}, env
            for source in container.get("envFrom", []):
                assert set(source) == {"secretRef"} or set(source) == {"configMapRef"}, source
            for arg in container.get("args", []) + container.get("command", []):
                # a database URI may name a user, never user:password
                assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", str(arg)), f"{workload}: {arg}"
    for doc in documents:
        for path, value in _walk(doc):
            leaf = path.rsplit(".", 1)[-1].lower()
            if leaf in {"password", "token", "secret"} and isinstance(value, str):
                pytest.fail(f"{name}: {doc['kind']}{path} holds a literal {leaf}")


def test_a_literal_password_in_values_never_reaches_a_manifest(helm, postgres_values):
    values = json.loads(json.dumps(postgres_values))
    # Someone tries to pass the password itself: there is no key that takes it.
    values["mlflow"]["postgres"]["password"] = PASSWORD_SENTINEL
    rendered = render(helm, values)
    assert all(PASSWORD_SENTINEL not in text for text in rendered.values())


def test_the_chart_arguments_pass_the_real_submitter(scenario, compiled_pipeline):
    """The --params JSON the CronJob renders is accepted by acgate.deploy.submit for a pipeline
    that declares the chart's default parameter names."""
    name, values, _, documents = scenario
    cronjobs = [doc for doc in documents if doc["kind"] == "CronJob"]
    if values.get("cronJob", {}).get("enabled") is False:
        assert cronjobs == [] and "ConfigMap" not in kinds(documents), name
        return
    container = cronjobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    args[args.index("--package") + 1] = str(compiled_pipeline)
    if "--token-file" in args:
        args[args.index("--token-file") + 1] = str(compiled_pipeline)  # any existing file
    request = parse_args(args)
    assert request.params["dataset_uri"] == "s3://acgate-data/train.parquet"
    assert request.params["seed"] == 0 and isinstance(request.params["seed"], int)
    if values.get("mlflow", {}).get("enabled"):
        assert request.params["mlflow_tracking_uri"] == (
            "http://acgate-mlflow.ml.svc.cluster.local:5000"
        )
    else:
        assert "mlflow_tracking_uri" not in request.params
    # the pipeline file the CronJob reads is the one the ConfigMap holds
    configmap = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    assert configmap["data"]["pipeline.yaml"] == compiled_pipeline.read_text(encoding="utf-8")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "pipeline")
    assert container["args"][container["args"].index("--package") + 1].startswith(
        mount["mountPath"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v["pipeline"].pop("yaml"), r"--set-file pipeline\.yaml=pipeline\.yaml"),
        (lambda v: v["pipeline"].update(yaml="a: 1\n"), r"not a compiled KFP pipeline"),
        (lambda v: v["pipeline"]["parameters"].update(dataset_uri=""), r"dataset_uri is empty"),
        (lambda v: v.update(kfp={"host": "ml-pipeline:8888"}), r"must start with http"),
        (
            lambda v: v.update(mlflow={"enabled": True, "backend": "mysql"}),
            r"mlflow\.backend \"mysql\" is not supported",
        ),
        (
            lambda v: v.update(mlflow={"enabled": True, "workers": 4}),
            r"workers must be 1 with the sqlite backend",
        ),
        (
            lambda v: v.update(
                mlflow={"enabled": True, "backend": "postgres", "postgres": {"host": "pg"}}
            ),
            r"passwordSecretRef\.name \(an existing Secret\) is required",
        ),
        (
            lambda v: v.update(mlflow={"enabled": True, "auth": {"enabled": True}}),
            r"mlflow\.auth\.secretRef\.name \(an existing Secret",
        ),
        (
            lambda v: v.update(
                mlflow={
                    "enabled": True,
                    "auth": {
                        "enabled": True,
                        "secretRef": {"name": "a"},
                        "defaultPermission": "ALL",
                    },
                }
            ),
            r"defaultPermission \"ALL\" is not one of",
        ),
        (lambda v: v.update(image={"digest": "sha256:abc"}), r"image\.digest \"sha256:abc\" must"),
        (
            lambda v: v.update(image={"digest": "5f" * 32}),
            r"must be \"sha256:\" followed by 64 lowercase hex",
        ),
        (
            lambda v: v.update(mlflow={"enabled": True, "image": {"repository": "mlflow"}}),
            r"mlflow\.image\.tag or mlflow\.image\.digest is required",
        ),
        (
            lambda v: v.update(
                mlflow={"enabled": True, "image": {"repository": "m", "digest": "sha256:1"}}
            ),
            r"mlflow\.image\.digest \"sha256:1\" must",
        ),
        (
            # null deletes the default label (Helm merges maps)
            lambda v: v.update(
                mlflow={
                    "enabled": True,
                    "networkPolicy": {"clientPodLabels": {"acgate.io/mlflow-client": None}},
                }
            ),
            r"clientPodLabels is empty",
        ),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm, base_values, change, message):
    values = json.loads(json.dumps(base_values))
    change(values)
    with pytest.raises(helm.HelmError, match=message):
        render(helm, values)


def test_helm_lint_is_clean(helm, base_values, postgres_values):
    for values in (None, base_values, postgres_values, _auth_values(base_values)):
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.27.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert problems == [], problems


def test_notes_render(helm, base_values, postgres_values):
    notes = render(helm, postgres_values)["acgate/templates/NOTES.txt"]
    assert "create job --from=cronjob/acgate-submit" in notes
    assert "port-forward svc/acgate-mlflow" in notes
    assert "WARNING" not in render(helm, base_values)["acgate/templates/NOTES.txt"]
    assert "WARNING: mlflow.auth.enabled=false" in notes
    assert "in namespaces ml, team-a may connect" in notes
    notes = render(helm, _auth_values(base_values))["acgate/templates/NOTES.txt"]
    assert "Auth: MLflow basic auth; admin user from Secret mlflow-admin" in notes
    assert "in namespaces ml, team-a, batch may connect" in notes
    assert "WARNING" not in notes


def _one(documents, kind):
    found = [doc for doc in documents if doc["kind"] == kind]
    assert len(found) == 1, (kind, kinds(documents))
    return found[0]


def test_images_are_pinned_by_digest(helm, base_values):
    documents = manifests(
        render(helm, {**base_values, "image": {"digest": DIGEST}, "mlflow": {"enabled": True}})
    )
    cronjob = _one(documents, "CronJob")
    submit = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    mlflow = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    # the MLflow server runs the acgate image by default, pinned the same way
    assert submit["image"] == mlflow["image"] == f"ghcr.io/acgate/acgate@{DIGEST}"
    documents = manifests(render(helm, _auth_values(base_values)))
    mlflow = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["image"] == f"ghcr.io/mlflow/mlflow@{MLFLOW_DIGEST}"
    # a tag still works without a digest
    documents = manifests(render(helm, base_values))
    cronjob = _one(documents, "CronJob")
    submit = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert submit["image"] == "ghcr.io/acgate/acgate:0.1.0"


def test_mlflow_network_policy_admits_only_labelled_clients(helm, base_values):
    documents = manifests(render(helm, {**base_values, "mlflow": {"enabled": True}}))
    policy = _one(documents, "NetworkPolicy")
    deployment = _one(documents, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()  # it selects the MLflow pod ...
    assert selector == deployment["spec"]["selector"]["matchLabels"]  # ... and only it
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["name"] == "http"
    [peer] = rule["from"]
    assert peer["podSelector"] == {"matchLabels": {"acgate.io/mlflow-client": "true"}}
    # the release namespace and single-user KFP's namespace; no other namespace, no ipBlock
    assert peer["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ml", "kubeflow"]}
        ]
    }

    policy = _one(manifests(render(helm, _auth_values(base_values))), "NetworkPolicy")
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[0]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "ml",
        "team-a",
        "batch",
    ]
    assert peers[1:] == [{"ipBlock": {"cidr": "10.1.0.0/16"}}]

    off = {**base_values, "mlflow": {"enabled": True, "networkPolicy": {"enabled": False}}}
    assert "NetworkPolicy" not in kinds(manifests(render(helm, off)))
    assert "NetworkPolicy" not in kinds(manifests(render(helm, base_values)))  # no MLflow


def test_the_pipeline_steps_that_use_mlflow_carry_the_admitted_label(tmp_path):
    """The label the compiled pipeline puts on its MLflow pods is the one the policy admits."""
    pytest.importorskip("kfp", reason="the kfp extra is needed to compile the pipeline")
    sys.path.insert(0, str(REPO))
    import pipeline

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    admitted = values["mlflow"]["networkPolicy"]["clientPodLabels"]
    documents = list(yaml.safe_load_all(pipeline.compile_pipeline(tmp_path / "p.yaml").read_text()))
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {"exec-analyze", "exec-tag-verdict", "exec-gate", "exec-repair",
            "exec-rescan"} <= set(executors)
    for config in executors.values():
        assert admitted.items() <= config["podMetadata"]["labels"].items()


def test_mlflow_basic_auth_takes_its_credentials_from_a_secret(helm, base_values):
    rendered = render(helm, _auth_values(base_values))
    documents = manifests(rendered)
    deployment = _one(documents, "Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert "--app-name=basic-auth" in container["args"]
    env = {item["name"]: item for item in container["env"]}
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"]["valueFrom"] == {
        "secretKeyRef": {"name": "mlflow-admin", "key": "username"}
    }
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "mlflow-admin", "key": "password"}
    }
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "mlflow-admin", "key": "flask-secret-key"}
    }
    config_path = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth-config")
    assert config_path == f"{mount['mountPath']}/basic_auth.ini" and mount["readOnly"] is True
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "auth-config")
    configmap = next(
        doc
        for doc in documents
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == volume["configMap"]["name"]
    )
    ini = configmap["data"]["basic_auth.ini"]
    assert "default_permission = READ" in ini
    assert "database_uri = sqlite:////mlflow/basic_auth.db" in ini
    assert "password" not in ini.lower()
    # a changed auth config rolls the pod
    assert len(pod["metadata"]["annotations"]["checksum/auth-config"]) == 64
    # without auth: none of it
    plain = manifests(render(helm, {**base_values, "mlflow": {"enabled": True}}))
    container = _one(plain, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not any("app-name" in arg for arg in container["args"])
    assert [e["name"] for e in container["env"]] == ["HOME"]
    assert [d["metadata"]["name"] for d in plain if d["kind"] == "ConfigMap"] == ["acgate-pipeline"]


def test_chart_versions_follow_the_package():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE).group(1)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == version
    assert values["image"]["repository"] == "ghcr.io/acgate/acgate"
    assert values["image"]["tag"] == ""  # defaults to appVersion


def test_every_values_key_is_documented():
    """Each key in values.yaml has a comment line right above it or above a parent key."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    key_line = re.compile(r"^(\s*)(?:- )?([A-Za-z_][\w.-]*):(\s|$)")
    documented_at: list[tuple[int, bool]] = []  # stack of (indent, documented)
    undocumented = []
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        while documented_at and documented_at[-1][0] >= indent:
            documented_at.pop()
        previous = lines[number - 1].strip() if number else ""
        documented = previous.startswith("#") or any(flag for _, flag in documented_at)
        if not documented:
            undocumented.append(f"line {number + 1}: {line.strip()}")
        documented_at.append((indent, previous.startswith("#")))
    assert undocumented == []
    # the top-level keys all carry their own comment
    top = [i for i, line in enumerate(lines) if key_line.match(line) and not line[0].isspace()]
    assert all(lines[i - 1].startswith("#") for i in top)


# --- the MLflow server command the chart renders, run for real on loopback ---------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, host_header: str, auth: tuple[str, str] | None = None) -> int:
    headers = {"Host": host_header}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@contextlib.contextmanager
def _serve(container: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None):
    """Run the rendered `mlflow server` command on loopback, /mlflow/ moved into tmp_path.

    Yields the base URL, the port and the data folder; the server's process group is stopped
    at the end.
    """
    port = _free_port()
    data = tmp_path / "mlflow"
    data.mkdir()
    args = [
        arg.replace("/mlflow/", f"{data}/")
        .replace("--host=0.0.0.0", "--host=127.0.0.1")
        .replace(f"--port={container['ports'][0]['containerPort']}", f"--port={port}")
        for arg in container["args"]
    ]
    assert container["command"] == ["mlflow", "server"]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    environment = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path), **(env or {})}
    server = subprocess.Popen(
        [str(mlflow_cli), "server", *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the server and its workers stop together
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/health", f"127.0.0.1:{port}") == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.25)
        yield base, port, data
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone if it failed to start
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


@pytest.mark.slow  # the MLflow server takes ~20 s to start (imports, sqlite migrations)
def test_rendered_mlflow_server_command_runs(helm, tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra runs the server")
    documents = manifests(
        render(helm, {"cronJob": {"enabled": False}, "mlflow": {"enabled": True}})
    )
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    with _serve(container, tmp_path) as (base, _, data):
        api = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        # the in-cluster Service name (what the pipeline gets as mlflow_tracking_uri) is allowed
        assert _get(api, "acgate-mlflow.ml.svc.cluster.local:5000") == 200
        assert _get(api, "acgate-mlflow:5000") == 200
        assert _get(api, "localhost:5000") == 200
        # any other Host header is refused (DNS-rebinding protection stays on)
        assert _get(api, "evil.example.com") == 403
        assert (data / "mlflow.db").is_file()


@pytest.mark.slow  # two MLflow apps start (~30 s)
def test_rendered_mlflow_basic_auth_refuses_anonymous_clients(helm, base_values, tmp_path):
    """The server the chart renders with mlflow.auth.enabled, run with its ConfigMap's settings
    and the Secret's values in the environment the secretKeyRefs give it."""
    pytest.importorskip("mlflow", reason="the mlflow extra runs the server")
    pytest.importorskip(
        "flask_wtf", reason="MLflow's basic-auth app needs Flask-WTF (in the image's lock)"
    )
    values = _auth_values({"cronJob": {"enabled": False}})
    documents = manifests(render(helm, values))
    deployment = _one(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ini = _one(documents, "ConfigMap")["data"]["basic_auth.ini"]
    config = tmp_path / "basic_auth.ini"
    config.write_text(ini.replace("/mlflow/", f"{tmp_path / 'mlflow'}/"), encoding="utf-8")
    secret = {
        "username": "admin",
        "password": "a-long-test-password-1f9e",
        "flask-secret-key": "0c5d" * 16,
    }
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config)}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "mlflow-admin"
            env[item["name"]] = secret[ref["key"]]
    assert set(env) == {
        "MLFLOW_AUTH_CONFIG_PATH",
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    }
    with _serve(container, tmp_path, env) as (base, port, data):
        api = f"{base}/api/2.0/mlflow/registered-models/search?max_results=1"
        host = f"127.0.0.1:{port}"
        assert _get(f"{base}/health", host) == 200  # the probes need no credentials
        assert _get(api, host) == 401  # anonymous: refused
        assert _get(api, host, ("admin", "wrong-password")) == 401
        assert _get(api, host, (secret["username"], secret["password"])) == 200
        assert (data / "basic_auth.db").is_file()  # users live beside the tracking data


@pytest.fixture(scope="module")
def incremental_package(tmp_path_factory) -> Path:
    """The real incremental pipeline, compiled as `python pipeline.py compile --incremental`."""
    pytest.importorskip("kfp", reason="the kfp extra is needed to compile a pipeline")
    sys.path.insert(0, str(REPO))
    import pipeline

    return pipeline.compile_pipeline(tmp_path_factory.mktemp("incremental") / "inc.yaml",
                                     incremental=True)


def _incremental_values(helm, package, **parameters):
    values = helm.parse_set_file(f"pipeline.yaml={package}")
    values["pipeline"]["mode"] = "incremental"
    values["pipeline"]["parameters"] = {"dataset_uri": "s3://acgate-data/partition.parquet",
                                        **parameters}
    return values


def test_the_incremental_mode_submits_the_incremental_pipeline(helm, incremental_package,
                                                               kubernetes_validate):
    baseline = "runs:/0123456789abcdef/baseline"
    values = _incremental_values(helm, incremental_package, baseline_uri=baseline)
    values["mlflow"] = {"enabled": True}
    documents = manifests(render(helm, values))
    for document in documents:
        kubernetes_validate.validate(document, "1.27.0", strict=True)
    cronjob = next(d for d in documents if d["kind"] == "CronJob")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    args[args.index("--package") + 1] = str(incremental_package)
    request = parse_args(args)  # the real submitter's checks against the real package
    assert request.params["baseline_uri"] == baseline
    assert request.params["mlflow_tracking_uri"].startswith("http://acgate-mlflow.")
    assert "n_shards" not in request.params  # the full pipeline's null fan-out is left out


@pytest.mark.parametrize(("mode", "incremental", "parameters", "message"), [
    ("incremental", False, {"baseline_uri": "runs:/x/baseline"},
     r"not the incremental pipeline: compile it with 'python pipeline\.py compile --incremental'"),
    ("full", True, {"baseline_uri": "runs:/x/baseline"},
     r"pipeline\.yaml is the incremental pipeline: set pipeline\.mode=incremental"),
    ("incremental", True, {}, r"baseline_uri is empty: name the last accepted scan"),
    ("full", False, {"baseline_uri": "runs:/x/baseline"},
     r"baseline_uri is set but pipeline\.mode is \"full\""),
    ("nightly", False, {}, r"pipeline\.mode \"nightly\" must be \"full\" or \"incremental\""),
    ("full", False, {"fallback": False}, r"fallback is set but pipeline\.mode is \"full\""),
    ("incremental", True, {"baseline_uri": "runs:/x/baseline", "model_name": "m"},
     r"model_name is set but pipeline\.mode is \"incremental\""),
    ("incremental", True, {"baseline_uri": "runs:/x/baseline", "n_shards": 4},
     r"n_shards is set but pipeline\.mode is \"incremental\""),
])
def test_a_mode_that_does_not_match_the_package_fails(helm, compiled_pipeline,
                                                      incremental_package, mode, incremental,
                                                      parameters, message):
    values = _incremental_values(helm, incremental_package if incremental else compiled_pipeline,
                                 **parameters)
    values["pipeline"]["mode"] = mode
    with pytest.raises(helm.HelmError, match=message):
        render(helm, values)
