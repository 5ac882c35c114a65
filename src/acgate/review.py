"""What a reviewer looks at beside a verdict: each class's judged evidence, and its near misses.

A class's ``reason`` (:class:`acgate.core.result.ClassReport`) lists every candidate the
analysis judged, each clause ending in ``-> poison`` or ``-> legitimate``, and the class's tail.
Here it is split into those clauses, and a clean class whose evidence came close to a cut is
named a *near miss*: a reviewer should look at it, the gate does not act on it. The report's
cards, the CLI table, ``scan --json`` and the MLflow run (tag ``acgate.near_miss_classes``) all
take them from here.

Near misses (one rule per test the default decision uses):

- the left-out candidate stayed in its label barely more often than it went to one other class
  (``l/p`` at most the cut divided by :data:`NEAR_RELATIVE`);
- the left-out candidate left its label (``l/p`` below the cut) and the share that went to one
  class came within :data:`NEAR_SHARE_POINTS` points of the source-share cut;
- a candidate passed the one-source rule and was cleared only as a natural overlap of the two
  classes measured at most :data:`NEAR_CONFUSION_FACTOR` times the confusion cut (by the proxy,
  or held out by the tails' retrain: its cut is the larger of its two), or cleared by the
  held-out overlap as look-alikes at a typicality at least :data:`NEAR_RELATIVE` of the cut
  (:data:`acgate.core.exre.OVERLAP_LOOKALIKE_TYPICALITY`), or by the proxy's confusion and the
  held-out overlap together, each below its cut (:data:`acgate.core.tail.OVERLAP_TOGETHER_SHARE`:
  always a near miss), or as not sure enough (confidence or typicality at least
  :data:`NEAR_RELATIVE` of their cut);
- the tail's clump reached at least :data:`NEAR_CLUMP_SHARE` of the rows it needs, or its
  clump was cleared as a natural overlap by the tests above (the held-out overlap within
  :data:`NEAR_CONFUSION_FACTOR` of its cut, or with the proxy's confusion together), or,
  without a clump, its flips went to at least
  :data:`NEAR_RELATIVE` of the effective classes that make such a tail poison
  (:data:`acgate.core.tail.TAIL_SPREAD_CLASSES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from acgate.core.result import ClassReport

#: A source share at most this many percentage points under its cut is a near miss.
NEAR_SHARE_POINTS = 10
#: A natural overlap measured at most this multiple of the confusion cut is a near miss (a
#: warping trigger's poisoned classes were cleared at 0.042-0.045 against 0.03).
NEAR_CONFUSION_FACTOR = 2.0
#: A confidence or typicality at least this share of its cut is a near miss.
NEAR_RELATIVE = 0.9
#: A tail clump of at least this share of the rows it needs is a near miss.
NEAR_CLUMP_SHARE = 0.5

# The clause ends the core writes (acgate.core.exre / acgate.core.tail): split after a verdict,
# and before the tail's clause (after "no candidate: ...", which has no verdict of its own).
_CLAUSE_END = re.compile(r"(?<=-> poison); |(?<=-> legitimate); |; (?=tail \()")
_LP = re.compile(r"(\d+) as class (\S+); l/p = ([0-9.]+) \(>= ([0-9.]+)\)")
_SHARE = re.compile(r"l/p = [0-9.]+ \(< [0-9.]+\), (\d+)% of it in class (\S+) \(< (\d+)%\)")
_NATURAL = re.compile(r"confuses classes (\S+) and (\S+) at ([0-9.]+) \(>= ([0-9.]+): a natural")
# acgate.core.tail.describe_overlap's clause, up to the median (source, class, share).
_HELD_OUT_CLAUSE = (r"held out, class (\S+)'s tail goes to class (\S+) at ([0-9.]+), the other "
                    r"tails at a median ")
_HELD_OUT = re.compile(
    _HELD_OUT_CLAUSE + r"([0-9.]+) \(>= the larger of ([0-9.]+) and ([0-9.]+) x that: a natural")
_TOGETHER = re.compile(
    _HELD_OUT_CLAUSE + r"[0-9.]+ \(< [^)]*\), but with the proxy's confusion"
    r"(?: of the two \([0-9.]+\))? both reach")
_LOOKALIKE = re.compile(
    r"sit at the edge of class (\S+) \(median typicality ([0-9.]+) < ([0-9.]+)\): look-alikes")
_NOT_SURE = re.compile(
    r"(mean confidence|median typicality) there ([0-9.]+) \(< ([0-9.]+): not sure")
_CLUMP = re.compile(r"clump of (\d+) sent away.*?, < (\d+) needed")
_SPREAD = re.compile(r"its (\d+) flips went to ([0-9.]+) effective classes \(< ([0-9.]+)\)")


@dataclass(frozen=True)
class Clause:
    """One judged piece of a class's evidence.

    Attributes:
        text: The clause as the analysis wrote it.
        verdict: ``"poison"``, ``"legitimate"`` or ``None`` (a statement such as "no candidate").
        near_miss: Why this clause came close to flagging the class, or ``None``.
    """

    text: str
    verdict: str | None
    near_miss: str | None


def clauses(reason: str) -> list[Clause]:
    """Split a class's reason into its judged clauses, each with its near miss (if any)."""
    parts = [part.strip() for part in _CLAUSE_END.split(reason or "") if part.strip()]
    found = []
    for text in parts:
        verdict = ("poison" if text.endswith("-> poison")
                   else "legitimate" if text.endswith("-> legitimate") else None)
        found.append(Clause(text, verdict, _near_miss(text) if verdict == "legitimate" else None))
    return found


def near_misses(report: ClassReport) -> list[str]:
    """Why a class judged clean came close to being flagged (empty: not close, or not clean)."""
    if report.verdict != "clean":
        return []
    return [clause.near_miss for clause in clauses(report.reason) if clause.near_miss]


def _near_miss(text: str) -> str | None:
    lp = _LP.search(text)
    if lp and float(lp[4]) > 0 and float(lp[3]) <= float(lp[4]) / NEAR_RELATIVE:
        return (f"a left-out candidate stayed in its class only {lp[3]}x as often as it went to "
                f"class {lp[2]} (cut {lp[4]})")
    share = _SHARE.search(text)
    if share:
        value, source, cut = int(share[1]), share[2], int(share[3])
        if cut - value <= NEAR_SHARE_POINTS:
            return f"{value}% of a left-out candidate went to class {source} (cut {cut}%)"
    natural = _NATURAL.search(text)
    if natural and float(natural[3]) <= NEAR_CONFUSION_FACTOR * float(natural[4]):
        return (f"a candidate went to class {natural[2]}; cleared as a natural overlap "
                f"(the proxy confuses the two classes at {natural[3]}, cut {natural[4]})")
    held_out = _HELD_OUT.search(text)
    if held_out:
        cut = max(float(held_out[5]), float(held_out[6]) * float(held_out[4]))
        if float(held_out[3]) <= NEAR_CONFUSION_FACTOR * cut:
            return (f"rows sent to class {held_out[1]} cleared as a natural overlap (held "
                    f"out, class {held_out[1]}'s tail goes to class {held_out[2]} at "
                    f"{held_out[3]}, cut {cut:.3f})")
    together = _TOGETHER.search(text)
    if together:
        return (f"rows sent to class {together[1]} cleared as a natural overlap by the proxy's "
                f"confusion and the held-out overlap together, each below its cut (class "
                f"{together[1]}'s tail goes to class {together[2]} at {together[3]})")
    lookalike = _LOOKALIKE.search(text)
    if lookalike and float(lookalike[2]) >= NEAR_RELATIVE * float(lookalike[3]):
        return (f"rows sent to class {lookalike[1]} cleared as look-alikes at the edge of it "
                f"(median typicality {lookalike[2]}, cut {lookalike[3]})")
    sure = _NOT_SURE.search(text)
    if sure and float(sure[2]) >= NEAR_RELATIVE * float(sure[3]):
        return f"a one-source candidate cleared only by its {sure[1]} {sure[2]} (cut {sure[3]})"
    clump = _CLUMP.search(text)
    if clump and int(clump[1]) >= NEAR_CLUMP_SHARE * int(clump[2]) > 0:
        return f"the tail's clump holds {clump[1]} rows ({clump[2]} needed)"
    spread = _SPREAD.search(text)
    if spread and float(spread[2]) >= NEAR_RELATIVE * float(spread[3]):
        return (f"the tail's {spread[1]} flips went to {spread[2]} effective classes "
                f"(cut {spread[3]})")
    return None
