#!/usr/bin/env bash
# `make image-test`: build docker/Dockerfile with podman on a Debian 12 base made here with
# debootstrap (no container registry needed), then run the image locked down (read-only root,
# uid 10001, no network, no capabilities, no privilege gain, tmpfs /tmp) and check it:
#   1. uid 10001, / not writable, /tmp writable;  2. `acgate --help`;  3. every extra imports;
#   4. `acgate scan` of poisoned digits: verdict "poisoned" (exit 3), the same flagged rows as the
#      same `acgate scan` command on the host;
#   5. the Kubeflow pipeline run locally with every component in its own container (kfp's
#      DockerRunner against podman's Docker-compatible API): same verdict and flagged rows; its
#      "poisoned" branch (repair, rescan of the repaired data, verdict) runs to the end
#      (fail_on_poisoned=False: the verdict step logs "data poisoned: ..." instead of failing).
# Needs root (debootstrap, podman's rootful store), podman, buildah, runc and debootstrap, about
# 7 GB free, and the project's .venv (the host side: data, reference scan, kfp's orchestrator).
# Everything it makes (images, temp folder, API service) is removed at exit, also on failure.
#
# Settings (environment): PY (host python with acgate; default .venv/bin/python), DEBIAN_MIRROR
# (default: the host's apt source), IMAGE_TEST_TMP (parent of the temp folder; default /var/tmp),
# TORCH_WHEELS (a folder holding the CPU torch wheel; default: found in pip's find-links),
# IMAGE_TEST_KEEP=1 (keep the images and the temp folder, to investigate a failure),
# IMAGE_TEST_RECORD=1 (on success, write the timings and the image size to bench/parts/image.md
# and reassemble bench/RESULTS.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")
START=$SECONDS

STEPS=() STEP_TIMES=()
step() {
  STEPS+=("$1") STEP_TIMES+=("$((SECONDS - START))")
  printf '\n== [%3ds] %s\n' "$((SECONDS - START))" "$1"
}
fail() { printf 'image-test FAILED: %s\n' "$*" >&2; exit 1; }

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null \
    || fail "$tool not found (Debian: apt-get install podman buildah runc debootstrap)"
done
[ "$(id -u)" = 0 ] || fail "run as root (debootstrap and podman's rootful image store)"
[ -x "$PY" ] || fail "$PY not found: run 'make install' first"

TORCH_VERSION=$(sed -n 's/^torch==//p' constraints.txt)
# The name the components declare (components/_image.py): kfp's DockerRunner runs that image.
IMAGE=$("$PY" -c "import sys; sys.path.insert(0, '.'); from components._image import IMAGE
print(IMAGE)")
BASE=localhost/acgate-image-test-base:$$
if podman image exists "$IMAGE"; then
  fail "$IMAGE already exists in podman's store; this test builds and removes that name, so it" \
       "refuses to replace an image it did not build (podman rmi $IMAGE, then rerun)"
fi

# Free disk: debootstrap root (~0.3 GB) + build (peak ~6 GB) in podman's store.
STORE=$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers)
mkdir -p "$STORE"
for dir in "$STORE" "${IMAGE_TEST_TMP:-/var/tmp}"; do
  free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
  [ "$free_kb" -ge $((7 * 1024 * 1024)) ] \
    || fail "$dir has $((free_kb / 1024 / 1024)) GB free; the image build needs about 7 GB"
done

WORK=$(mktemp -d "${IMAGE_TEST_TMP:-/var/tmp}/acgate-image-test.XXXXXX")
IMAGES_BEFORE=$(podman images -a -q --no-trunc | sort -u)
SERVICE_PID=
cleanup() {
  status=$?
  set +e
  [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
  if [ -n "${IMAGE_TEST_KEEP:-}" ]; then  # to investigate a failure: remove them yourself
    echo "kept: images $IMAGE $BASE, folder $WORK"
  else
    # Only what this run made: its two names, then the intermediate (builder) images that
    # appeared during the run (a build by someone else at the same time would lose its own).
    podman rmi -f "$IMAGE" "$BASE" >/dev/null 2>&1
    comm -13 <(echo "$IMAGES_BEFORE") <(podman images -a -q --no-trunc | sort -u) \
      | xargs -r podman rmi -f >/dev/null 2>&1
    rm -rf "$WORK"
  fi
  printf '\nimage-test %s after %ds\n' "$([ $status = 0 ] && echo passed || echo FAILED)" \
    "$((SECONDS - START))"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# podman's defaults fail on CI-like machines: its default ulimits exceed the hard limits of a
# root without CAP_SYS_RESOURCE, and crun does not support hybrid cgroups (runc does).
cat > "$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

# --- base image -------------------------------------------------------------------------------
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources \
  2>/dev/null | grep -v security | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
step "base image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  bookworm "$WORK/rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
  || { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap"; }
# The python slim image has no PEP 668 marker; Debian's python refuses `pip install` with one.
rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED

# The CPU torch wheel: from a local folder when pip here is configured with one (this machine's
# CPU index is unreachable), else from the Dockerfile's default TORCH_INDEX_URL.
wheels=${TORCH_WHEELS:-}
if [ -z "$wheels" ]; then
  for dir in ${PIP_FIND_LINKS:-} $("$PY" -m pip config list 2>/dev/null \
      | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p"); do
    if compgen -G "$dir/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then wheels=$dir; break; fi
  done
fi
build_args=()
{
  echo "[global]"
  # Outbound TLS may go through an intercepting proxy whose CA only the host trusts: the host's
  # bundle is mounted over the base's at build time (nothing of it stays in a layer).
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  if [ -n "$wheels" ]; then
    echo "find-links = /opt/wheels"
    build_args+=(--build-arg TORCH_INDEX_URL= -v "$wheels:/opt/wheels:ro")
  fi
} > "$WORK/rootfs/etc/pip.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] \
  && build_args+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
tar --numeric-owner -C "$WORK/rootfs" -c . | podman import -q - "$BASE" >/dev/null
rm -rf "$WORK/rootfs"
echo "torch wheel folder: ${wheels:-none (the CPU index)}"

# --- build ------------------------------------------------------------------------------------
# buildah 1.28: the layer cache breaks RUN --mount from=builder, --layers=false deletes the base
# and --no-cache alone tries to pull localhost/...: hence --no-cache --pull=never. It reads no
# <Dockerfile>.dockerignore by itself (--ignorefile); --format docker keeps HEALTHCHECK.
step "build $IMAGE on $BASE"
podman build --no-cache --pull=never --format docker \
  -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore \
  --build-arg BASE_IMAGE="$BASE" \
  --build-arg VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  "${build_args[@]}" -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log"; fail "podman build (log above)"; }
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE: $((size / 1000 / 1000)) MB"

# --no-healthcheck: the image has none, and podman would ask systemd (absent here) to run it.
LOCKED=(podman run --rm --no-healthcheck --read-only --user 10001:10001 --network=none
        --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp)

# --- 1-3: user, read-only root, help, extras --------------------------------------------------
step "locked down: uid, read-only /, writable /tmp"
got=$("${LOCKED[@]}" --entrypoint sh "$IMAGE" -c \
  'id -u; id -g; touch /probe 2>/dev/null && echo "/ writable"; touch /tmp/probe && echo tmp-ok')
echo "$got"
[ "$got" = "$(printf '10001\n10001\ntmp-ok')" ] \
  || fail "expected uid/gid 10001, a read-only / and a writable /tmp"

step "acgate --help"
"${LOCKED[@]}" "$IMAGE" --help > /dev/null || fail "acgate --help"

step "import every extra"
# torch, io, mlflow, gx, report, kfp (pyproject.toml's extras), and the image-only packages.
"${LOCKED[@]}" --entrypoint python "$IMAGE" -c '
import acgate.cli, acgate.deploy.submit
import torch, tqdm, pyarrow, pandas, PIL, mlflow, flask_wtf, great_expectations, matplotlib, kfp
import psycopg2
print("torch", torch.__version__, "| cuda built:", torch.version.cuda)
assert torch.version.cuda is None, "the image must hold the CPU build of torch"
' || fail "import of the extras"

# --- 4: scan in the image == scan on the host -------------------------------------------------
step "data: poisoned digits (host)"
mkdir -p "$WORK/kfp/data" "$WORK/image-scan"
"$BIN/acgate" poison digits --rate 0.33 --seed 0 --out "$WORK/kfp/data/digits.parquet" >/dev/null
# uid 10001 reads the data and writes its outputs through bind mounts.
chown -R 10001:10001 "$WORK/kfp" "$WORK/image-scan"
SCAN_FLAGS=(--seed 0 --epochs 3 --no-mlflow --no-report --json)

step "acgate scan in the image"
rc=0
"${LOCKED[@]}" -v "$WORK/kfp/data:/data:ro" -v "$WORK/image-scan:/workspace" "$IMAGE" \
  scan /data/digits.parquet --out /workspace/scan "${SCAN_FLAGS[@]}" \
  > "$WORK/image-scan.json" || rc=$?
[ "$rc" = 3 ] || fail "acgate scan in the image exited $rc, expected 3 (poison found)"

step "acgate scan on the host (same flags)"
rc=0
OMP_NUM_THREADS=1 "$BIN/acgate" scan "$WORK/kfp/data/digits.parquet" --out "$WORK/host-scan" \
  "${SCAN_FLAGS[@]}" > "$WORK/host-scan.json" || rc=$?
[ "$rc" = 3 ] || fail "acgate scan on the host exited $rc, expected 3 (poison found)"

# --- 5: the pipeline, every component in the image --------------------------------------------
step "pipeline: kfp DockerRunner -> podman API, every task in $IMAGE"
podman system service --time=0 "unix://$WORK/podman.sock" &
SERVICE_PID=$!
for _ in $(seq 50); do [ -S "$WORK/podman.sock" ] && break; sleep 0.2; done
DOCKER_HOST=unix://$WORK/podman.sock "$PY" docker/image_pipeline.py --root "$WORK/kfp" \
  --dataset "$WORK/kfp/data/digits.parquet" --out "$WORK/pipeline.json" --epochs 3 --seed 0 \
  > "$WORK/pipeline.log" 2>&1 \
  || { tail -n 60 "$WORK/pipeline.log"; fail "pipeline run in containers (log above)"; }
grep -a -E "Executing task|finished with status" "$WORK/pipeline.log" | sed 's/\x1b\[[0-9;]*m//g'
grep -a -q "data poisoned: .*rescan of the repaired data: " "$WORK/pipeline.log" \
  || fail "the verdict step did not report the rescanned repair (pipeline.log)"
# Every task's outputs were written by uid 10001 (the runner's --user reached each container).
owners=$(find "$WORK/kfp" -path "$WORK/kfp/data" -prune -o -type f -printf '%u\n' | sort -u)
[ "$owners" = 10001 ] || fail "pipeline outputs owned by '$owners', expected only uid 10001"
kill "$SERVICE_PID" && wait "$SERVICE_PID" 2>/dev/null || true
SERVICE_PID=

step "compare: image scan, host scan, pipeline"
"$PY" - "$WORK" <<'EOF'
import json
import sys
from pathlib import Path

import pandas as pd

work = Path(sys.argv[1])


def flagged(samples: Path) -> list[int]:
    table = pd.read_parquet(samples, columns=["index", "is_poison"])
    return sorted(table["index"][table["is_poison"]].tolist())


image = json.loads((work / "image-scan.json").read_text())
host = json.loads((work / "host-scan.json").read_text())
piped = json.loads((work / "pipeline.json").read_text())
rows = {"image scan": flagged(work / "image-scan" / "scan" / "samples.parquet"),
        "host scan": flagged(work / "host-scan" / "samples.parquet"),
        "pipeline in image": flagged(Path(piped["samples"]))}
verdicts = {"image scan": image["verdict"], "host scan": host["verdict"],
            "pipeline in image": piped["verdict"]}
for name in rows:
    print(f"{name:18} verdict {verdicts[name]:9} flagged {len(rows[name])} rows")
if set(verdicts.values()) != {"poisoned"}:
    sys.exit(f"expected the verdict 'poisoned' everywhere: {verdicts}")
if not rows["host scan"] or any(value != rows["host scan"] for value in rows.values()):
    sys.exit("the flagged rows differ between the host and the image")
EOF

if [ -n "${IMAGE_TEST_RECORD:-}" ]; then
  STEP_TIMES+=("$((SECONDS - START))")
  {
    echo "## image"
    echo
    echo "\`make image-test\` (\`docker/image_test.sh\`): the image built with podman on a"
    echo "Debian 12 base made by debootstrap, then checked read-only as uid 10001 with no network"
    echo "(see \`docker/README.md\`). Seconds per step; the machine's other jobs share its cores."
    echo
    echo "command: \`IMAGE_TEST_RECORD=1 make image-test\`  "
    echo "machine: $(uname -m), $(nproc) cores, $(podman --version)," \
         "$(buildah --version | cut -d' ' -f1-3); date $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "| step | s |"
    echo "|---|---|"
    for i in "${!STEPS[@]}"; do
      echo "| ${STEPS[$i]} | $((STEP_TIMES[i + 1] - STEP_TIMES[i])) |"
    done
    echo "| **total**, before the clean-up (venv already installed) | $((SECONDS - START)) |"
    echo
    echo "Image size: $((size / 1000 / 1000)) MB (\`podman image inspect --format '{{.Size}}'\`)."
  } > bench/parts/image.md
  "$PY" -c "from bench.results import assemble; assemble(False)"
  echo "recorded: bench/parts/image.md, bench/RESULTS.md"
fi
