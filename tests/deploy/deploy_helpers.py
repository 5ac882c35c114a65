"""Helpers for the deployment tests: render the chart, split manifests, find pod specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "acgate"


def render(helm, values: dict[str, Any], *, namespace: str = "ml") -> dict[str, str]:
    """Render the chart like `helm template acgate charts/acgate -n ml` with these values."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name="acgate", namespace=namespace, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render (NOTES.txt left out)."""
    documents = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def pod_specs(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every workload in the documents."""
    found = []
    for doc in documents:
        kind = doc["kind"]
        if kind == "CronJob":
            found.append(
                (doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            )
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
            found.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif kind == "Pod":
            found.append((doc["metadata"]["name"], doc["spec"]))
    return found
