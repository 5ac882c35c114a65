"""What every benchmark shares: settings, the block above each table, tables, RSS, caches.

Only numpy and the standard library are imported at module level: measurement child processes
(``scale``, ``art_scale``) import this module before they measure their own memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import resource
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PARTS_DIR = BENCH_DIR / "parts"
#: Proxy epochs in quick mode (a smoke run; full mode uses the ScanConfig default, 30).
QUICK_EPOCHS = 5


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """How one benchmark command runs; handed to every experiment.

    Attributes:
        command: The exact command line, written above every table.
        quick: Smoke run: fewer seeds, rates and sizes; parts go to ``bench/parts/quick``.
        threads: Torch threads (also part of the activation-cache key).
        note: Free text added under the machine line (e.g. which machine ran it).
        parts_root: Folder of the reference parts (``bench/parts``).
    """

    command: str
    quick: bool = False
    threads: int = 2
    note: str = ""
    parts_root: Path = PARTS_DIR

    @property
    def parts_dir(self) -> Path:
        """``bench/parts`` (full runs) or ``bench/parts/quick`` (smoke runs)."""
        return self.parts_root / "quick" if self.quick else self.parts_root

    @property
    def proxy_epochs(self) -> int | None:
        """Proxy epochs of the digits runs: :data:`QUICK_EPOCHS`, or ``None`` (the default)."""
        return QUICK_EPOCHS if self.quick else None


def machine_line(threads: int | None = None, acgate_detail: str = "") -> str:
    """Cores, torch threads, versions and date, for the line above each table.

    Args:
        threads: Torch threads to report; ``None``: ``torch.get_num_threads()``.
        acgate_detail: Added in parentheses after acgate's version (e.g. commit and core
            digest).

    Returns:
        ``machine: <node> (<arch>, <CPU model>), <n> cores, torch threads <t>, ...; date
        <UTC>``.
    """
    import sklearn
    import torch

    import acgate
    from acgate.torch._arrays import cpu_model

    threads = torch.get_num_threads() if threads is None else threads
    detail = f" ({acgate_detail})" if acgate_detail else ""
    # Proxies trained on two CPU models can differ (torch's CPU kernels need not be
    # bit-identical across them), and so can a scan's flags: the line names the CPU.
    cpu = cpu_model()
    return (f"machine: {platform.node()} ({platform.machine()}{', ' + cpu if cpu else ''}), "
            f"{os.cpu_count()} cores, "
            f"torch threads {threads}, python {platform.python_version()}, "
            f"torch {torch.__version__}, numpy {np.__version__}, scikit-learn "
            f"{sklearn.__version__}, acgate {acgate.__version__}{detail}; date "
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")


def table_header(settings: BenchSettings) -> str:
    """The command + machine block that precedes every table."""
    note = f"  \nnote: {settings.note}" if settings.note else ""
    return f"command: `{settings.command}`  \n{machine_line()}{note}\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 3 decimals, every other value its ``str``."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def split_summary(items: Sequence[Any], value: Callable[[Any], float],
                  kinds: Sequence[tuple[str, Callable[[Any], bool]]], cut: float
                  ) -> list[list[Any]]:
    """Rows of a per-data-set summary of attack-matrix measurements, one per data set and kind.

    Each item needs ``cell`` (``data/case``) and ``seed``. A row: the data set, the kind, how
    many items and cells, the range of ``value`` and how many reach ``cut``.
    """
    rows = []
    for data in sorted({item.cell.split("/")[0] for item in items}):
        mine = [item for item in items if item.cell.startswith(data + "/")]
        for kind, belongs in kinds:
            group = [item for item in mine if belongs(item)]
            values = [value(item) for item in group]
            span = f"{min(values):.2f}-{max(values):.2f}" if values else "-"
            rows.append([data, kind, len(group), len({(i.cell, i.seed) for i in group}), span,
                         sum(v >= cut for v in values)])
    return rows


def rate_name(rate: float | None) -> str:
    """``10%`` or ``clean``."""
    return "clean" if rate is None else f"{rate:.0%}"


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field in KiB (``VmHWM``, ``VmRSS``); ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB: ``VmHWM`` where Linux has it, else ``ru_maxrss``.

    ``ru_maxrss`` survives fork + exec (a child of a 2 GB parent starts at 2 GB), so on Linux
    the per-address-space high-water mark ``VmHWM`` is the honest number.
    """
    peak = status_kib("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_step_child(module: str, step: str, arguments: dict[str, Any],
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``module.child(step, json)`` in a fresh process (as a pod would); its JSON line.

    Args:
        module: The bench module defining ``child(step, arguments_json)``.
        step: The step's name.
        arguments: The step's arguments (JSON-serialisable).
        env: Environment variables added to this process's.

    Raises:
        RuntimeError: The child failed (its stderr's end quoted).
    """
    import subprocess
    import sys

    completed = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-c", f"import sys; from {module} import child; "
         "child(sys.argv[1], sys.argv[2])", step, json.dumps(arguments)],
        capture_output=True, text=True, check=False, cwd=BENCH_DIR.parent,
        env={**os.environ, **(env or {})})
    if completed.returncode != 0:
        raise RuntimeError(f"step {step} failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def cached_runs(cache_dir: Path, env: str, names: list[str],
                one_run: Callable[[str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run the runs named in ``$env`` and return every record cached in ``cache_dir``.

    Long experiments split their runs over processes this way and rebuild their section from
    whatever runs are present.

    Args:
        cache_dir: Folder of the records, one ``<run>.json`` each.
        env: Environment variable with the runs to run (comma-separated; default: all
            ``names``).
        names: Every run the experiment knows.
        one_run: Runs one run and returns its JSON-serialisable record.

    Returns:
        Run name -> record, for every record in ``cache_dir`` (run now or earlier).

    Raises:
        ValueError: ``$env`` names a run not in ``names``.
    """
    selected = [r for r in os.environ.get(env, ",".join(names)).split(",") if r]
    unknown = sorted(set(selected) - set(names))
    if unknown:
        raise ValueError(f"{env}: unknown run(s) {unknown}; known: {names}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in selected:
        record = one_run(name)
        write_text_atomic(cache_dir / f"{name}.json", json.dumps(record, indent=1, default=float))
    return {path.stem: json.loads(path.read_text()) for path in cache_dir.glob("*.json")}
