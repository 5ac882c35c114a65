"""Shared fixtures for the deployment tests: a real compiled KFP pipeline and the chart renderer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# The inputs the chart's default `pipeline.parameters` fill in. The tiny pipeline below declares
# exactly these, so the chart's rendered arguments can be checked by the real submitter.
PIPELINE_SOURCE = """
from typing import Optional

from kfp import compiler, dsl


@dsl.component(base_image="ghcr.io/acgate/acgate:0.1.0")
def gate(
    dataset_uri: str,
    size_threshold: float,
    silhouette_threshold: float,
    analysis: str,
    seed: int,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
) -> str:
    return dataset_uri


@dsl.pipeline(name="acgate-deploy-test")
def pipeline(
    dataset_uri: str,
    size_threshold: float = 0.35,
    silhouette_threshold: float = 0.10,
    analysis: str = "relative-size",
    seed: int = 0,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
):
    gate(
        dataset_uri=dataset_uri,
        size_threshold=size_threshold,
        silhouette_threshold=silhouette_threshold,
        analysis=analysis,
        seed=seed,
        model_name=model_name,
        model_version=model_version,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )


def compile_to(path):
    compiler.Compiler().compile(pipeline, str(path))
"""


@pytest.fixture(scope="session")
def compiled_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pipeline YAML, compiled by kfp as `python pipeline.py compile` does."""
    pytest.importorskip("kfp", reason="the kfp extra is needed to compile a pipeline")
    folder = tmp_path_factory.mktemp("pipeline")
    source = folder / "acgate_deploy_test_pipeline.py"
    source.write_text(PIPELINE_SOURCE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("acgate_deploy_test_pipeline", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = folder / "pipeline.yaml"
    module.compile_to(path)
    return path


@pytest.fixture(scope="session")
def helm():
    """The Helm engine (Helm's Go SDK through the helm-python-sdk wheel)."""
    helm_python = pytest.importorskip(
        "helm_python",
        reason=(
            "chart rendering needs the Helm engine from PyPI: pip install 'helm-python-sdk==0.2.2' "
            "(Linux/macOS/Windows wheels bundle Helm v4's Go SDK; no helm binary needed)"
        ),
    )
    helm_python.disable_logging()
    return helm_python
