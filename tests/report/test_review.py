"""acgate.review: a class's reason split into judged clauses, and its near misses."""

import dataclasses

import numpy as np

from acgate.core.evidence import Thresholds
from acgate.core.exre import one_source_verdict
from acgate.core.result import ClassReport
from acgate.core.tail import TailVerdict
from acgate.review import clauses, near_misses

THRESHOLDS = Thresholds()


def _candidate(share: float, *, confusion: float = 0.0, confidence: float | None = None,
               typicality: float | None = None,
               overlap: tuple[float | None, float | None] = (None, None)) -> str:
    """A candidate clause as exclusionary reclassification writes it (the core's own words)."""
    poisoned, why = one_source_verdict(0.3, share, confusion, THRESHOLDS, label=7, source=9,
                                       confidence=confidence, typicality=typicality,
                                       overlap=overlap[0], overlap_median=overlap[1])
    return (f"cluster of k = 3 (stability 0.97), 8.0% of the class, left out of a retrain: "
            f"5 classified as 7, 60 as class 9; {why} -> "
            f"{'poison' if poisoned else 'legitimate'}")


def _tail(clump: int, needed: int = 40) -> str:
    n = 100
    amid = np.zeros(n)
    amid[:clump] = 1.0
    tail = TailVerdict(members=np.arange(n), sent_away=np.ones(n, bool), flips=np.ones(n, bool),
                       cohesive=np.zeros(n, bool), amid_cohesive=amid, needed=needed, source=9)
    return tail.explain(7, 500)


def _report(reason: str, verdict: str = "clean") -> ClassReport:
    return ClassReport(label=7, n_samples=500, n_clusters=3, cluster_sizes=(300, 160, 40),
                       suspicious_cluster=2, size_ratio=0.08, silhouette=0.2, exre_score=0.3,
                       suspected_source=None, verdict=verdict, reason=reason)


def test_the_reason_splits_into_its_judged_clauses():
    reason = "; ".join([_candidate(0.30), _candidate(0.80), _tail(5)])
    found = clauses(reason)
    assert [c.verdict for c in found] == ["legitimate", "poison", "legitimate"]
    assert found[0].text.startswith("cluster of k = 3") and found[2].text.startswith("tail (")
    # The tail's own "; clump of ..." stays inside its clause.
    assert "clump of 5 sent away" in found[2].text
    assert clauses("no candidate: no stable cluster of at most 45% of the class; " + _tail(0))[
        0].verdict is None


def test_near_misses_name_what_came_close():
    assert near_misses(_report(_candidate(0.47))) == [
        "47% of a left-out candidate went to class 9 (cut 50%)"]
    assert near_misses(_report(_candidate(0.30))) == []  # 20 points under: not close
    assert "natural overlap" in near_misses(_report(_candidate(0.8, confusion=0.045)))[0]
    assert near_misses(_report(_candidate(0.8, confusion=0.2))) == []  # a plain overlap
    assert near_misses(_report(_candidate(0.8, confidence=0.88))) == [
        "a one-source candidate cleared only by its mean confidence 0.88 (cut 0.9)"]
    assert near_misses(_report(_candidate(0.8, overlap=(0.05, 0.006)))) == [
        "rows sent to class 9 cleared as a natural overlap (held out, class 9's tail goes to "
        "class 7 at 0.050, cut 0.039)"]
    assert near_misses(_report(_candidate(0.8, overlap=(0.3, 0.006)))) == []  # a plain overlap
    # A plain overlap, but its rows came close to sitting inside the source (cut 0.3).
    assert near_misses(_report(_candidate(0.8, confidence=0.95, typicality=0.28,
                                          overlap=(0.3, 0.006)))) == [
        "rows sent to class 9 cleared as look-alikes at the edge of it (median typicality "
        "0.28, cut 0.3)"]
    assert near_misses(_report(_candidate(0.8, confidence=0.95, typicality=0.2,
                                          overlap=(0.3, 0.006)))) == []
    # Cleared by the confusion and the held-out overlap together: each below its cut.
    assert near_misses(_report(_candidate(0.8, confusion=0.02, confidence=0.95, typicality=0.2,
                                          overlap=(0.02, 0.0)))) == [
        "rows sent to class 9 cleared as a natural overlap by the proxy's confusion and the "
        "held-out overlap together, each below its cut (class 9's tail goes to class 7 at "
        "0.020)"]
    assert near_misses(_report(_tail(25))) == ["the tail's clump holds 25 rows (40 needed)"]
    stayed = ("cluster of k = 3 (stability 0.97), 38% of the class, left out of a retrain: 476 "
              "classified as 7, 450 as class 9; l/p = 1.06 (>= 1) -> legitimate")
    assert near_misses(_report(stayed)) == [
        "a left-out candidate stayed in its class only 1.06x as often as it went to class 9 "
        "(cut 1)"]
    assert near_misses(_report(stayed.replace("1.06", "1.26"))) == []
    assert near_misses(_report(_tail(10))) == []
    # Only clean classes are near misses.
    assert near_misses(_report(_candidate(0.47), verdict="poisoned")) == []


def test_a_tail_cleared_together_or_spread_almost_widely_enough_is_a_near_miss():
    n = 100
    sent_to = np.full(n, 9)
    tail = TailVerdict(members=np.arange(n), sent_away=np.ones(n, bool), flips=np.ones(n, bool),
                       cohesive=np.ones(n, bool), amid_cohesive=np.ones(n), needed=40, source=9,
                       sent_to=sent_to, overlap=(0.022, 0.0), confusion=0.024, together=True,
                       class_rows=2000)
    assert tail.explain(7, 2000).endswith("-> legitimate")
    assert near_misses(_report(tail.explain(7, 2000))) == [
        "rows sent to class 9 cleared as a natural overlap by the proxy's confusion and the "
        "held-out overlap together, each below its cut (class 9's tail goes to class 7 at "
        "0.022)"]

    def scattered(destinations: int) -> str:
        flips = np.zeros(n, bool)
        flips[:60] = True
        return dataclasses.replace(
            tail, flips=flips, sent_to=np.resize(np.arange(destinations), n), overlap=None,
            confusion=None, together=False, amid_cohesive=np.zeros(n)).explain(7, 2000)

    # 60 flips to 5 classes evenly: 5 effective classes, 0.83 of the cut of 6: not close.
    assert near_misses(_report(scattered(5))) == []
    # To 6 or more: the tail is poison, no near miss; to 5.5-6 would be one (0.9 of the cut).
    assert scattered(6).endswith("samples of several source classes) -> poison")
    text = scattered(5).replace("5.0 effective classes", "5.5 effective classes")
    assert near_misses(_report(text)) == [
        "the tail's 60 flips went to 5.5 effective classes (cut 6)"]


def test_the_cli_table_names_near_misses():
    from acgate.cli import format_class_table
    from acgate.core.result import DetectionResult, RunInfo

    reports = (_report(_candidate(0.47)), dataclasses.replace(
        _report(_candidate(0.30)), label=8))
    labels = np.repeat([7, 8], 250)
    result = DetectionResult(
        sample_ids=np.arange(500), labels=labels, segments=labels, clusters=np.zeros(500, int),
        is_poison=np.zeros(500, bool), poison_score=np.zeros(500),
        suspected_source=np.full(500, -1), classes=reports, info=RunInfo())
    table = format_class_table(result)
    assert ("near miss: class 7 is clean but came close: 47% of a left-out candidate went to "
            "class 9 (cut 50%)") in table
    assert "class 8" not in table.split("near miss")[-1]
