"""How far apart the sides of each redraw lie, in the attack matrix's records (issue 18).

The table that chose ``acgate.core.redraw.REDRAW_MIN_SEPARATION``: a redraw of a poisoned
class's rows that adds rows is taken only when the two sides it settles on lie at least that
many standard deviations apart along the line through their centres (README, step 6). Every
scan of a variant of ``bench/attack_matrix.py`` whose core measures it writes the separation
into the class's reason (``the sides S SD apart``, or ``rows not redrawn: ... (A added, D
dropped) lies only S SD apart``); this script reads those clauses back from the variant's
records (no scan is run) and sets each class's poison F1 beside the one a comparison variant
recorded for the same cell (by default ``beside``, whose core took every redraw that settled).

Usage: ``python bench/redraw_separation.py [--variant settled] [--against beside]`` writes
``bench/parts/redraw_separation.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import PARTS_DIR, markdown_table, write_text_atomic

PART = PARTS_DIR / "redraw_separation.md"
RECORDS = PARTS_DIR / "attack_matrix"
TAKEN = re.compile(r"rows redrawn around [^;]*?: (\d+) added, (\d+) dropped, \d+ flagged, "
                   r"the sides ([\d.]+|inf) SD apart")
NOT_TAKEN = re.compile(r"rows not redrawn: [^;]*?\((\d+) added, (\d+) dropped\) lies only "
                       r"([\d.]+|inf) SD apart")


@dataclass(frozen=True)
class Redraw:
    """One redraw of a poisoned class, as its reason tells it."""

    cell: str
    seed: int
    label: int
    added: int
    dropped: int
    separation: float
    taken: bool
    poison_rows: int
    f1: float | None
    f1_against: float | None


def parse_clause(reason: str) -> tuple[int, int, float, bool] | None:
    """``(added, dropped, separation, taken)`` of a reason's redraw clause, or ``None``."""
    for pattern, taken in ((TAKEN, True), (NOT_TAKEN, False)):
        found = pattern.search(reason)
        if found:
            return int(found.group(1)), int(found.group(2)), float(found.group(3)), taken
    return None


def _class_f1s(path: Path) -> dict[int, float]:
    """The poison F1 of each class of a record that has one (none when there is no record)."""
    if not path.is_file():
        return {}
    return {int(report["label"]): float(report["poison_f1"])
            for report in json.loads(path.read_text())["per_class"]
            if report.get("poison_f1") is not None}


def read_redraws(variant: str, against: str) -> tuple[list[Redraw], int]:
    """Every redraw clause in the variant's records, and how many records there are."""
    files = sorted((RECORDS / variant).glob("*/*.json"))
    redraws = []
    for path in files:
        record = json.loads(path.read_text())
        against_f1 = _class_f1s(RECORDS / against / path.relative_to(RECORDS / variant))
        for report in record["per_class"]:
            parsed = parse_clause(report.get("reason") or "")
            if parsed is None:
                continue
            label = int(report["label"])
            f1 = report.get("poison_f1")
            redraws.append(Redraw(record["cell"], int(record["seed"]), label, *parsed,
                                  poison_rows=int(report.get("poison_n_poison") or 0),
                                  f1=None if f1 is None else float(f1),
                                  f1_against=against_f1.get(label)))
    return redraws, len(files)


def summary_rows(redraws: list[Redraw]) -> list[list[Any]]:
    """Per data set: redraws, those that add rows, taken or not, the separations."""
    rows = []
    for data in sorted({r.cell.split("/")[0] for r in redraws}):
        mine = [r for r in redraws if r.cell.startswith(data + "/")]
        adding = [r for r in mine if r.added]
        taken = [r.separation for r in adding if r.taken]
        refused = [r.separation for r in adding if not r.taken]
        rows.append([data, len(mine), len({(r.cell, r.seed) for r in mine}), len(adding),
                     f"{len(taken)} ({min(taken):.2f}-{max(taken):.2f})" if taken else "0",
                     ", ".join(f"{s:.2f}" for s in sorted(refused)) or "-"])
    return rows


def _f1(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Tabulate the redraw clauses of one variant's records into the part file."""
    from acgate.core.redraw import REDRAW_MIN_SEPARATION

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="settled", help="attack-matrix variant to read")
    parser.add_argument("--against", default="beside",
                        help="variant whose class F1 is set beside (the same cells)")
    args = parser.parse_args(argv)
    redraws, n_records = read_redraws(args.variant, args.against)
    if not redraws:
        print(f"no redraw of variant {args.variant!r} reports its separation", file=sys.stderr)
        return 1
    command = ("python bench/redraw_separation.py "
               + shlex.join(sys.argv[1:] if argv is None else argv))
    cut = REDRAW_MIN_SEPARATION
    close = sorted((r for r in redraws if r.added and r.separation < cut + 2),
                   key=lambda r: r.separation)
    detail = [[r.cell, r.seed, r.label, r.poison_rows, r.added, r.dropped, f"{r.separation:.2f}",
               "yes" if r.taken else "**no**", *((_f1(r.f1), _f1(r.f1_against)) if r.poison_rows
                                                  else ("-", "-"))] for r in close]
    text = (
        "## redraw_separation (issue 18: how far apart the sides of a redraw lie)\n\n"
        f"The {len(redraws)} redraws (of classes judged poisoned) in variant `{args.variant}`'s "
        f"{n_records} attack-matrix records, read back from their reasons (README, step 6). "
        "Separation: the two sides' means along the line through their centres, in standard "
        "deviations (each side's spread counting equally). The cut `REDRAW_MIN_SEPARATION` = "
        f"{cut:g}: a redraw that adds rows and settles below it is not taken (the analysis's "
        "rows stand); one that only drops rows is taken at any separation.\n\n"
        f"command: `{command.strip()}` (reads `bench/parts/attack_matrix/{args.variant}/` and "
        f"`{args.against}/`)\n\n"
        + markdown_table(["data", "redraws", "cells", "adding rows",
                          "taken (separation)", "not taken (separation)"],
                         summary_rows(redraws))
        + f"\nThe redraws that add rows and settle below {cut + 2:g} SD, the closest first; "
          f"class F1 in `{args.variant}` and in `{args.against}` (the same cached proxy, every "
          "settled redraw taken; `-`: a class without poison, judged poisoned):\n\n"
        + markdown_table(["cell", "seed", "class", "poison rows", "added", "dropped",
                          "separation", "taken",
                          f"class F1 ({args.variant})", f"class F1 ({args.against})"], detail))
    write_text_atomic(PART, text)
    print(f"wrote {PART}")
    return 0
