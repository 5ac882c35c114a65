"""Run the acgate pipeline locally with every component in the acgate image (kfp DockerRunner).

``docker/image_test.sh`` runs this against podman's Docker-compatible API (``DOCKER_HOST``
pointing at ``podman system service``'s socket). Each task runs in its own container of the
image named by the components (``ghcr.io/acgate/acgate:<version>``, which must exist locally:
kfp would otherwise try to pull it), locked down as a restricted Kubernetes pod would be: a
read-only root filesystem, uid/gid 10001, no network, no capabilities, no privilege gain, a
writable ``/tmp``. kfp bind-mounts the pipeline root at the same path in every container, so the
dataset must lie under ``--root``.

Usage::

    python docker/image_pipeline.py --root DIR --dataset DIR/data.parquet --out outputs.json \
        [--epochs 3] [--seed 0]

Writes ``{"verdict", "samples", "dataset_sha256"}`` as JSON to ``--out`` (stdout carries the
tasks' logs); exits 0 when the run completed, whatever the verdict; a failed task raises (kfp
names it; its log is above). The run is made with ``fail_on_poisoned=False``: on poisoned data
the pipeline's "poisoned" branch (``tag_verdict``, ``repair``, ``rescan`` of the repaired data,
``verdict``) runs in the image to the end, and the ``verdict`` step logs the outcome instead of
failing the run (its default), so the run's outputs can be compared.
"""

# No `from __future__ import annotations`: kfp reads the pipeline's annotations at runtime.
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402

#: ``docker run`` settings of every task (docker-py's ``containers.run`` keywords). The image's
#: ENTRYPOINT is ``acgate``; KFP's container ``command`` replaces it on Kubernetes, whereas
#: kfp's DockerRunner passes the command as the container's arguments only. An empty entrypoint
#: is not a reset through podman's Docker API (the image's is kept), so ``env`` runs the command
#: as given, on Docker and podman alike.
CONTAINER_RUN_ARGS = {
    "entrypoint": ["/usr/bin/env"],
    "user": "10001:10001",
    "read_only": True,
    "network_mode": "none",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "tmpfs": {"/tmp": "rw,nosuid,nodev"},
}


def main(argv: list[str] | None = None) -> int:
    """Command line: run the pipeline once in containers and print its outputs."""
    from kfp import local

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True,
                        help="pipeline root (absolute; mounted into every container)")
    parser.add_argument("--dataset", type=Path, required=True,
                        help="dataset Parquet file under --root")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the outputs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root, dataset = args.root.resolve(), args.dataset.resolve()
    if not dataset.is_relative_to(root):
        parser.error(f"--dataset {dataset} must lie under --root {root}: only the pipeline root "
                     "is mounted into the containers")
    local.init(runner=local.DockerRunner(**CONTAINER_RUN_ARGS), pipeline_root=str(root),
               raise_on_error=True, enable_caching=False)
    arguments = {"dataset_uri": str(dataset), "seed": args.seed, "epochs": args.epochs,
                 "fail_on_poisoned": False}
    task = pipeline.acgate_pipeline(**pipeline._with_every_optional_input(arguments))
    args.out.write_text(json.dumps({"verdict": task.outputs["verdict"],
                                    "samples": task.outputs["samples"].path,
                                    "dataset_sha256": task.outputs["dataset_sha256"]}),
                        encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
