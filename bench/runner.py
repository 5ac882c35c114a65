"""Benchmarks of acgate's Activation Clustering; writes ``bench/RESULTS.md``.

Each experiment is a function that returns a Markdown section; the section is written to
``bench/parts/<name>.md`` and ``bench/RESULTS.md`` is reassembled from every part present, so
experiments can run separately (``--only NAME``), in the background, or on another machine.

Usage::

    python bench/run.py --quick                 # smoke run, < 3 minutes on 2 cores
    python bench/run.py                         # full run
    python bench/run.py --only reducers         # one experiment
    python bench/run.py --only mnist --threads 16
    python bench/run.py --assemble              # rebuild RESULTS.md from bench/parts/

``--quick`` writes ``bench/parts/quick/`` and ``bench/RESULTS-quick.md`` instead, so a smoke
run never overwrites the reference numbers. ``python -m bench`` takes the same arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

from bench.common import BenchSettings
from bench.experiments import (
    art,
    art_scale,
    beyond_mnist,
    bounded_class,
    candidates,
    digits_quality,
    digits_separation,
    fill,
    incremental,
    mnist,
    multimodal,
    one_flow,
    redraw,
    reducers,
    repair_mnist,
    scale,
    scan_breakdown,
    shards,
    shared_evidence,
    size_threshold,
    source_share,
)
from bench.results import EXPERIMENT_ORDER, assemble, write_part

#: Experiment name -> the function that runs it and returns its Markdown section.
EXPERIMENTS: dict[str, Callable[[BenchSettings], str]] = {
    "reducers": reducers.section,
    "size_threshold": size_threshold.section,
    "candidates": candidates.section,
    "source_share": source_share.section,
    "digits_quality": digits_quality.section,
    "mnist": mnist.section,
    "scale": scale.section,
    "art": art.section,
    "repair_mnist": repair_mnist.section,
    "multimodal": multimodal.section,
    "art_scale": art_scale.section,
    "beyond_mnist": beyond_mnist.section,
    "one_flow": one_flow.section,
    "incremental": incremental.section,
    "shards": shards.section,
    "bounded_class": bounded_class.section,
    "scan_breakdown": scan_breakdown.section,
    "redraw": redraw.section,
    "fill": fill.section,
    "shared": shared_evidence.section,
    "digits_separation": digits_separation.section,
}
#: Left out of ``--quick`` (MNIST-scale data, ART, or long).
NOT_IN_QUICK = ("mnist", "art", "repair_mnist", "multimodal", "art_scale", "beyond_mnist",
                "candidates", "one_flow", "incremental", "shards", "bounded_class",
                "scan_breakdown", "redraw", "fill", "shared", "digits_separation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (unchanged since the single-file ``bench/run.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke subset (< 3 min)")
    parser.add_argument("--only", action="append", choices=sorted(EXPERIMENTS),
                        help="run only this experiment (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--note", default="", help="text added under each machine line")
    parser.add_argument("--assemble", action="store_true", help="only rebuild RESULTS.md")
    # the measurement children of the ``scale`` experiment
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-child", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected experiments and write their parts + RESULTS.md."""
    args = parse_args(argv)
    if args.scale_child:
        scale.scale_child(args.scale_child)
        return 0
    if args.stream_child:
        scale.stream_child(*args.stream_child)
        return 0
    if args.assemble:
        assemble(args.quick)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    settings = BenchSettings(command=command, quick=args.quick, threads=args.threads,
                             note=args.note)
    names = args.only or [n for n in EXPERIMENT_ORDER
                          if not (settings.quick and n in NOT_IN_QUICK)]
    for name in names:
        start = time.perf_counter()
        write_part(name, EXPERIMENTS[name](settings), settings)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0
