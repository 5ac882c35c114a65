"""How widely the tails' flips spread, in the attack matrix's records (issue 18).

The table that chose ``acgate.core.tail.TAIL_SPREAD_CLASSES``: a class's tail without a clump
is poison when its flips (tail rows the tails' retrain sent confidently to another class as
typical members of it), as many as a clump needs, went to at least that effective number of
classes (README, step 5). Every scan of a variant of ``bench/attack_matrix.py`` whose core asks
it writes the test into the class's reason (``its N flips went to X effective classes``); this
script reads those clauses back from the variant's records (no scan is run) and tabulates them
per data set, for the classes that hold poison and the clean ones.

Usage: ``python bench/tail_spread.py [--variant settled]`` writes ``bench/parts/tail_spread.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from bench.common import PARTS_DIR, markdown_table, split_summary, write_text_atomic

PART = PARTS_DIR / "tail_spread.md"
RECORDS = PARTS_DIR / "attack_matrix"
CLAUSE = re.compile(r"its (\d+) flips went to ([\d.]+) effective classes")


@dataclass(frozen=True)
class Tail:
    """One tail whose spread was asked."""

    cell: str
    seed: int
    label: int
    class_rows: int
    poison_rows: int
    flips: int
    spread: float


def read_tails(variant: str) -> tuple[list[Tail], int]:
    """Every tail of the variant's records whose spread was asked, and how many records."""
    files = sorted((RECORDS / variant).glob("*/*.json"))
    tails = []
    for path in files:
        record = json.loads(path.read_text())
        for report in record["per_class"]:
            found = CLAUSE.search(report.get("reason") or "")
            if found:
                tails.append(Tail(record["cell"], int(record["seed"]), int(report["label"]),
                                  int(report["n_samples"]),
                                  int(report.get("poison_n_poison") or 0),
                                  int(found.group(1)), float(found.group(2))))
    return tails, len(files)


def summary_rows(tails: list[Tail], cut: float) -> list[list[Any]]:
    """Per data set: tails of clean and of poisoned classes, their spreads, how many reach cut."""
    return split_summary(tails, lambda t: t.spread,
                         (("clean class", lambda t: not t.poison_rows),
                          ("poisoned class", lambda t: bool(t.poison_rows))), cut)


def main(argv: list[str] | None = None) -> int:
    """Tabulate the asked tails of one variant's records into ``bench/parts/tail_spread.md``."""
    from acgate.core.tail import TAIL_SPREAD_CLASSES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="settled", help="attack-matrix variant to read")
    args = parser.parse_args(argv)
    tails, n_records = read_tails(args.variant)
    if not tails:
        print(f"no tail of variant {args.variant!r} was asked its spread", file=sys.stderr)
        return 1
    command = "python bench/tail_spread.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    clean = sorted((t for t in tails if not t.poison_rows), key=lambda t: -t.spread)[:6]
    poison = sorted((t for t in tails if t.poison_rows), key=lambda t: -t.spread)[:6]
    detail = [[t.cell, t.seed, t.label, t.class_rows, t.poison_rows, t.flips, f"{t.spread:.2f}"]
              for t in clean + poison]
    text = (
        "## tail_spread (issue 18: where the flips of a tail without a clump go)\n\n"
        f"The {len(tails)} tails of variant `{args.variant}`'s {n_records} attack-matrix records "
        "that were asked the several-sources test of a tail (classes of at least 1,000 rows, no "
        "clump, at least as many flips as a clump needs; README, step 5), read back from their "
        "reasons. Spread: the effective number of classes the flips went to (inverse Simpson "
        "index). A class is *poisoned* when it holds poison rows. The cut "
        f"`TAIL_SPREAD_CLASSES` = {TAIL_SPREAD_CLASSES:g}: a tail at or above it is poison, and "
        "its flips are flagged unless a candidate of the class proves it already.\n\n"
        f"command: `{command.strip()}` (reads `bench/parts/attack_matrix/{args.variant}/`)\n\n"
        + markdown_table(["data", "tails of", "tails", "cells", "spread",
                          f">= {TAIL_SPREAD_CLASSES:g}"], summary_rows(tails, TAIL_SPREAD_CLASSES))
        + "\nThe tails that spread most, of clean classes and of poisoned ones (the poisoned "
          "classes' other tails are clumped, or their poison is not in their flips: a text "
          "signature sends its tail to the one other class):\n\n"
        + markdown_table(["cell", "seed", "class", "class rows", "poison rows", "flips",
                          "spread"], detail))
    write_text_atomic(PART, text)
    print(f"wrote {PART}")
    return 0
