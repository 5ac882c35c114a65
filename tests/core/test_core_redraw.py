"""The redraw of a poisoned class's flagged rows (acgate.core.redraw)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from acgate.core import detect
from acgate.core.evidence import ClassJudgement
from acgate.core.redraw import (
    FILL_MIN_FLAGGED,
    FILL_NEIGHBOURS,
    REDRAW_MIN_ROWS,
    REDRAW_MIN_SEPARATION,
    RowRedraw,
    fill_rows,
    redraw_judgement,
    redraw_rows,
)
from acgate.core.result import NO_VALUE


def class_with_poison(seed: int = 0, n_clean: int = 1500, n_poison: int = 100):
    """A class in 16 dimensions of spread 5 down to 0.5, and poison: rows of the same spread
    moved 8 sd along the narrowest direction (a trigger the class's main variation hides)."""
    rng = np.random.default_rng(seed)
    spread = np.linspace(5.0, 0.5, 16)
    clean = rng.normal(size=(n_clean, 16)) * spread
    poison = rng.normal(size=(n_poison, 16)) * spread
    poison[:, -1] += 4.0
    x = np.concatenate([clean, poison])
    truth = np.r_[np.zeros(n_clean, bool), np.ones(n_poison, bool)]
    return x, truth


def rough_flags(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Half the poison and 30 clean rows: what a candidate that cut through the poison flags."""
    rng = np.random.default_rng(seed)
    poison, clean = np.flatnonzero(truth), np.flatnonzero(~truth)
    flags = np.zeros(len(truth), bool)
    flags[rng.choice(poison, len(poison) // 2, replace=False)] = True
    flags[rng.choice(clean, 30, replace=False)] = True
    return flags


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_redraw_finds_the_poison_a_rough_flag_set_missed(seed):
    x, truth = class_with_poison(seed)
    flags = rough_flags(truth, seed)
    redraw = redraw_rows(x, flags)
    assert redraw is not None
    found = redraw.flagged
    assert (found & truth).sum() >= 98 and (found & ~truth).sum() <= 2
    assert redraw.added == int((found & ~flags).sum()) and redraw.added >= 48
    assert redraw.removed == int((flags & ~found).sum()) and redraw.removed >= 28
    assert ((redraw.score > 0.5) == found).all()
    assert redraw.taken and redraw.separation >= REDRAW_MIN_SEPARATION
    assert "added" in redraw.describe() and f"{int(found.sum())} flagged" in redraw.describe()
    assert f"the sides {np.floor(redraw.separation * 100) / 100:.2f} SD apart" in (
        redraw.describe())


def test_redraw_needs_the_whitening():
    # Along the raw directions the trigger is lost in the class's main variation: the same
    # iteration without whitening does not recover the poison (why the space is whitened).
    x, truth = class_with_poison(0)
    flags = rough_flags(truth, 0)
    current = flags
    for _ in range(25):
        near = np.linalg.norm(x - x[current].mean(axis=0), axis=1)
        far = np.linalg.norm(x - x[~current].mean(axis=0), axis=1)
        current = near < far
    assert (current & truth).sum() < 90 or (current & ~truth).sum() > 20
    assert redraw_rows(x, flags).flagged[truth].sum() >= 98


def test_redraw_is_deterministic_and_follows_the_rows():
    x, truth = class_with_poison(1)
    flags = rough_flags(truth, 1)
    first, second = redraw_rows(x, flags), redraw_rows(x, flags)
    assert np.array_equal(first.flagged, second.flagged)
    order = np.random.default_rng(5).permutation(len(x))
    permuted = redraw_rows(x[order], flags[order])
    assert np.array_equal(permuted.flagged, first.flagged[order])


def test_a_class_without_a_separate_group_keeps_the_analysis_rows():
    # One Gaussian: started from a slice at one end, two-centroid k-means walks to a half
    # split, past any size threshold, or keeps moving: the redraw is not taken.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1200, 16)) * np.linspace(3.0, 1.0, 16)
    flags = x[:, 0] > np.quantile(x[:, 0], 0.9)
    assert redraw_rows(x, flags, max_share=0.45) is None


def class_with_a_long_tail(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class with no group of its own: one direction lognormal (a long far end), flagged at
    its top 4% (what an analysis flags where a proxy learned the trigger only partly)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 16)) * np.linspace(3.0, 1.0, 16)
    x[:, 0] = rng.lognormal(0.0, 0.6, size=1500) * 2.0
    return x, x[:, 0] > np.quantile(x[:, 0], 0.96)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_redraw_that_adds_a_slice_of_a_continuum_is_reported_not_taken(seed):
    x, flags = class_with_a_long_tail(seed)
    redraw = redraw_rows(x, flags, max_share=0.45)
    assert redraw is not None and not redraw.taken
    assert redraw.added > 50 and redraw.separation < REDRAW_MIN_SEPARATION
    assert redraw.describe().startswith("rows not redrawn") and f"({redraw.added} added" in (
        redraw.describe())
    assert f"SD apart (< {REDRAW_MIN_SEPARATION:g})" in redraw.describe()
    sources = np.where(flags, 3, NO_VALUE)
    given = judgement(flags, poisoned=True, sources=sources)
    kept = redraw_judgement(given, x, n_components=20, max_share=0.45)
    fill = fill_rows(x, flags, max_share=0.45)
    if fill is None:
        assert kept.flagged is given.flagged and kept.sample_scores is given.sample_scores
        assert kept.sample_sources is given.sample_sources
        assert kept.reason == f"the analysis's; {redraw.describe()}"
    else:  # the fill starts from the analysis's rows, and creeps a row or two at most
        assert fill.added <= 2 and np.array_equal(kept.flagged, fill.flagged)
        assert kept.reason == f"the analysis's; {redraw.describe()}; {fill.describe()}"


@pytest.mark.parametrize("separation, shown", [(3.996, "3.99"), (4.0, "4.00"), (12.345, "12.34"),
                                                (float("inf"), "inf")])
def test_the_separation_is_shown_rounded_down(separation, shown):
    # Just under the cut never reads as at it; sides without spread read as inf.
    dropped_only = RowRedraw(flagged=np.zeros(10, bool), score=np.zeros(10), added=0,
                             removed=1, rounds=2, n_components=20, separation=separation)
    assert dropped_only.taken
    assert f"the sides {shown} SD apart" in dropped_only.describe()
    if separation < REDRAW_MIN_SEPARATION:
        refused = dataclasses.replace(dropped_only, added=3)
        assert f"lies only {shown} SD apart" in refused.describe()


@pytest.mark.parametrize("added, separation, taken", [
    (0, 0.5, True), (3, REDRAW_MIN_SEPARATION - 1e-9, False), (3, REDRAW_MIN_SEPARATION, True),
    (3, float("inf"), True)])
def test_a_redraw_is_taken_when_it_only_drops_rows_or_its_sides_stand_apart(added, separation,
                                                                            taken):
    redraw = RowRedraw(flagged=np.zeros(10, bool), score=np.zeros(10), added=added, removed=1,
                       rounds=2, n_components=20, separation=separation)
    assert redraw.taken is taken


def test_a_redraw_that_only_drops_rows_is_taken_however_close_the_sides():
    # A diffuse flagged group beside a tight class: the redraw drops its near rows and adds
    # none; the sides it settles on lie less than the cut apart, and it is taken all the same
    # (it keeps a part of what the analysis proved).
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(1000, 4)) * 0.2
    wide = rng.normal(size=(100, 4)) * 3.0 + np.array([2.0, 0.0, 0.0, 0.0])
    x = np.concatenate([clean, wide])
    flags = np.r_[np.zeros(1000, bool), np.ones(100, bool)]
    redraw = redraw_rows(x, flags, max_share=0.45)
    assert redraw.added == 0 and redraw.removed > 20
    assert redraw.separation < REDRAW_MIN_SEPARATION and redraw.taken
    assert not (redraw.flagged & ~flags).any()


@pytest.mark.parametrize("case", ["few flagged", "few unflagged", "off", "share"])
def test_redraw_keeps_the_analysis_rows_when_it_cannot_speak(case):
    x, truth = class_with_poison(0)
    flags, kwargs = rough_flags(truth, 0), {}
    if case == "few flagged":
        flags = np.zeros(len(x), bool)
        flags[np.flatnonzero(truth)[:REDRAW_MIN_ROWS - 1]] = True
    elif case == "few unflagged":
        flags = np.ones(len(x), bool)
        flags[:REDRAW_MIN_ROWS - 1] = False
    elif case == "off":
        kwargs["n_components"] = 0
    else:
        kwargs["max_share"] = 0.05  # the poison is 6% of the class
    assert redraw_rows(x, flags, **kwargs) is None


def judgement(flags: np.ndarray, *, poisoned: bool, sources: np.ndarray | None):
    return ClassJudgement(
        suspicious_cluster=1, size_ratio=0.1, is_poisoned=poisoned, reason="the analysis's",
        flagged=flags, sample_scores=np.where(flags, 0.9, 0.1), suspected_source=3,
        sample_sources=sources)


def test_redraw_judgement_replaces_rows_and_scores_and_added_rows_name_no_source():
    x, truth = class_with_poison(0)
    flags = rough_flags(truth, 0)
    # The retrain sent the flagged rows to class 3 and the others to class 4 (a candidate it
    # cleared, say): an added row still names no source.
    sources = np.where(flags, 3, 4)
    redrawn = redraw_judgement(judgement(flags, poisoned=True, sources=sources), x,
                               n_components=20, max_share=0.45)
    assert redrawn.is_poisoned and (redrawn.flagged == truth).sum() >= len(truth) - 2
    assert redrawn.reason.startswith("the analysis's; rows redrawn")
    assert ((redrawn.sample_scores > 0.5) == redrawn.flagged).all()
    added = redrawn.flagged & ~flags
    assert added.sum() >= 48 and (redrawn.sample_sources[added] == NO_VALUE).all()
    assert (redrawn.sample_sources[flags] == 3).all()
    assert (sources[added] == 4).all()  # the input is not changed


def test_redraw_judgement_leaves_clean_classes_and_stood_flags_alone():
    x, truth = class_with_poison(0)
    flags = rough_flags(truth, 0)
    clean = judgement(flags, poisoned=False, sources=None)
    assert redraw_judgement(clean, x, n_components=20, max_share=0.45) is clean
    off = judgement(flags, poisoned=True, sources=None)
    assert redraw_judgement(off, x, n_components=0, max_share=0.45) is off
    # No per-row sources: an added row gets the class's one suspected source when flagged.
    whole = redraw_judgement(off, x, n_components=20, max_share=0.45)
    assert whole.sample_sources is None and whole.flagged.sum() > flags.sum() - 30


def rough_clusterings():
    """Class 0 holds the poison of :func:`class_with_poison` and a 2-clustering whose small
    cluster is :func:`rough_flags` (what k-means on the unwhitened directions gives); class 1
    is clean and split in halves. Returns activations, labels, truth and the clusterings."""
    from acgate.core import ClassClustering

    rng = np.random.default_rng(0)
    x, truth = class_with_poison(0)
    other = rng.normal(size=(1600, 16)) * np.linspace(5.0, 0.5, 16) + 40.0
    acts = np.concatenate([x, other])
    labels = np.r_[np.zeros(len(x), int), np.ones(len(other), int)]
    rough = rough_flags(truth, 0)
    halves = np.arange(len(other)) % 2
    clusterings = [
        ClassClustering(label=0, positions=np.arange(len(x)), clusters=rough.astype(int),
                        n_clusters=2, silhouette=0.3, reduced=x[:, :10]),
        ClassClustering(label=1, positions=len(x) + np.arange(len(other)), clusters=halves,
                        n_clusters=2, silhouette=0.0, reduced=other[:, :10]),
    ]
    return acts, labels, np.r_[truth, np.zeros(len(other), bool)], clusterings


def analyzed(redraw_components=None, **kwargs):
    from acgate.core import analyze

    acts, labels, truth, clusterings = rough_clusterings()
    if redraw_components is not None:
        kwargs["redraw_components"] = redraw_components
    result = analyze(acts, labels, clusterings, sample_ids=np.arange(len(labels)),
                     segments=labels, analysis="size", random_state=0, **kwargs)
    return result, truth


def test_analyze_redraws_a_poisoned_class_and_zero_turns_it_off():
    on, truth = analyzed()
    off, _ = analyzed(0)
    assert [c.verdict for c in on.classes] == [c.verdict for c in off.classes] == [
        "poisoned", "clean"]
    assert on.info.params["redraw_components"] == 20
    assert off.info.params["redraw_components"] == 0
    assert "rows redrawn" in on.classes[0].reason and "redrawn" not in off.classes[0].reason
    assert int((off.is_poison & truth).sum()) == 50 and int((off.is_poison & ~truth).sum()) == 30
    assert int((on.is_poison & truth).sum()) >= 98 and int((on.is_poison & ~truth).sum()) <= 2
    assert ((on.poison_score[:1600] > 0.5) == on.is_poison[:1600]).all()


def test_the_class_size_threshold_caps_the_redraw():
    from acgate.core import Thresholds

    capped, _ = analyzed(class_thresholds={0: Thresholds(size=0.055)})
    assert capped.classes[0].verdict == "poisoned"  # the rough cluster is 5% of the class
    assert "rows redrawn" not in capped.classes[0].reason  # the poison is 6.25%


def test_analyze_refuses_a_redraw_setting_that_contradicts_the_recorded_one():
    with pytest.raises(ValueError, match="redraw_components=20 contradicts"):
        analyzed(params={"redraw_components": 0, "random_state": 0})


def test_redraw_copes_with_no_variance_and_more_directions_than_there_are():
    x, truth = class_with_poison(0)
    flags = rough_flags(truth, 0)
    assert redraw_rows(np.ones_like(x), flags) is None
    wide = redraw_rows(x, flags, n_components=500)
    assert wide is not None and wide.n_components == 16
    assert (wide.flagged == truth).sum() >= len(truth) - 2


def test_flags_that_already_are_the_group_are_left_as_they_are():
    x, truth = class_with_poison(0)
    assert redraw_rows(x, truth) is None  # nothing moves: the analysis's rows and scores stand


@pytest.mark.parametrize("value, error", [(-1, ValueError), (2.5, TypeError),
                                          (True, TypeError)])
def test_detect_refuses_a_bad_redraw_components(value, error):
    x, _ = class_with_poison(0)
    labels = np.r_[np.zeros(800, int), np.ones(800, int)]
    with pytest.raises(error, match="redraw_components"):
        detect(x, labels, analysis="size-silhouette", redraw_components=value)


def class_with_scattered_poison(seed: int = 0, n_clean: int = 1800, n_groups: int = 9,
                                per_group: int = 22) -> tuple[np.ndarray, np.ndarray]:
    """A class in 16 dimensions, and poison from several sources: small groups of rows, each
    apart from the clean rows in its own direction (what all-to-one poison looks like where the
    proxy learned its trigger only partly: nine groups, none a cluster of the class)."""
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(n_clean, 16))
    groups = []
    for group in range(n_groups):
        centre = np.zeros(16)
        centre[group % 16] = 5.0
        centre[(group + 7) % 16] = -3.0
        groups.append(centre + 0.6 * rng.normal(size=(per_group, 16)))
    x = np.concatenate([clean, *groups])
    truth = np.r_[np.zeros(n_clean, bool), np.ones(n_groups * per_group, bool)]
    return x, truth


def part_of_each_group(truth: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """The analysis's flags: ``share`` of the poison rows, drawn at random."""
    rng = np.random.default_rng(seed)
    poison = np.flatnonzero(truth)
    flags = np.zeros(len(truth), bool)
    flags[rng.choice(poison, int(share * len(poison)), replace=False)] = True
    return flags


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fill_adds_the_poison_next_to_the_flags_and_no_clean_row(seed):
    x, truth = class_with_scattered_poison(seed)
    flags = part_of_each_group(truth, 0.6, seed)
    fill = fill_rows(x, flags, max_share=0.45)
    assert fill is not None and fill.rounds >= 2
    assert (fill.flagged & truth).sum() >= truth.sum() - 5
    assert not (fill.flagged & ~truth).any()
    joined = fill.flagged & ~flags
    assert fill.added == int(joined.sum()) >= 0.35 * truth.sum()
    assert (fill.share[joined] >= FILL_MIN_FLAGGED / FILL_NEIGHBOURS).all()
    assert np.isnan(fill.share[~joined]).all()
    assert fill.describe() == (f"{fill.added} more rows joined, each with at least "
                               f"{FILL_MIN_FLAGGED} of its {FILL_NEIGHBOURS} nearest neighbours "
                               f"in that space flagged, {int(fill.flagged.sum())} flagged")
    again = fill_rows(x, flags, max_share=0.45)
    assert np.array_equal(again.flagged, fill.flagged)


def test_the_redraw_alone_misses_scattered_poison_that_the_fill_finds():
    # Nine groups are no one group: the two-centroid redraw cannot settle on them, the fill
    # reaches each from its flagged rows.
    x, truth = class_with_scattered_poison(0)
    flags = part_of_each_group(truth, 0.6, 0)
    redraw = redraw_rows(x, flags, max_share=0.45)
    if redraw is not None and redraw.taken:
        assert (redraw.flagged & truth).sum() < truth.sum() - 20
    given = judgement(flags, poisoned=True, sources=np.where(flags, 3, NO_VALUE))
    filled = redraw_judgement(given, x, n_components=20, max_share=0.45)
    assert (filled.flagged & truth).sum() >= truth.sum() - 5 and not (filled.flagged & ~truth).any()
    joined = filled.flagged & ~flags
    assert (filled.sample_sources[joined] == NO_VALUE).all()
    assert (filled.sample_scores[joined] >= 0.5).all()
    assert filled.reason.endswith(f"{int(filled.flagged.sum())} flagged")
    assert "more rows joined" in filled.reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fill_barely_moves_a_slice_of_one_gaussian(seed):
    # A clean row has clean rows around it: at the edge of a slice of a continuum, most of a
    # row's nearest neighbours lie on the unflagged side, so the fill does not creep.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 16)) * np.linspace(3.0, 1.0, 16)
    flags = x[:, 0] > np.quantile(x[:, 0], 0.9)
    fill = fill_rows(x, flags, max_share=0.45)
    assert fill is None or fill.added <= 5


def test_a_fill_past_the_size_threshold_is_not_taken():
    x, truth = class_with_scattered_poison(0)
    flags = part_of_each_group(truth, 0.6, 0)
    assert fill_rows(x, flags, max_share=0.45) is not None
    assert fill_rows(x, flags, max_share=0.09) is None  # the poison alone is 9.9% of the class


@pytest.mark.parametrize("case", ["off", "few flagged", "tiny class", "no variance",
                                  "nothing joins"])
def test_the_fill_keeps_the_rows_when_it_cannot_speak(case):
    x, truth = class_with_scattered_poison(0)
    flags = part_of_each_group(truth, 0.6, 0)
    kwargs = {"max_share": 0.45}
    if case == "off":
        kwargs["n_components"] = 0
    elif case == "few flagged":
        flags = np.zeros(len(x), bool)
        flags[np.flatnonzero(truth)[:REDRAW_MIN_ROWS - 1]] = True
    elif case == "tiny class":
        x, flags = x[:FILL_NEIGHBOURS], np.arange(FILL_NEIGHBOURS) < 5
    elif case == "no variance":
        x = np.ones_like(x)
    else:
        flags = truth.copy()  # every poison row flagged already
    assert fill_rows(x, flags, **kwargs) is None


def test_the_fill_leaves_a_duplicate_row_out_of_its_own_neighbours():
    # Exact duplicates: a row's nearest neighbour may be its twin listed before it; the row
    # itself never counts among its neighbours.
    x, truth = class_with_scattered_poison(0)
    x = np.concatenate([x, x])
    truth = np.r_[truth, truth]
    flags = part_of_each_group(truth, 0.6, 0)
    fill = fill_rows(x, flags, max_share=0.45)
    assert fill is not None and not (fill.flagged & ~truth).any()
    assert (fill.flagged & truth).sum() >= truth.sum() - 10


def test_a_class_past_the_fill_cap_keeps_the_redraw_rows_and_says_so(monkeypatch):
    import acgate.core.redraw as redraw_module

    x, truth = class_with_scattered_poison(0)
    flags = part_of_each_group(truth, 0.6, 0)
    given = judgement(flags, poisoned=True, sources=None)
    monkeypatch.setattr(redraw_module, "FILL_MAX_CLASS_ROWS", len(x) - 1)
    capped = redraw_judgement(given, x, n_components=20, max_share=0.45)
    assert "more rows joined" not in capped.reason
    assert capped.reason.endswith(f"no neighbours fill in a class of more than {len(x) - 1:,} rows")
    assert (capped.flagged & truth).sum() < truth.sum() - 20  # the fill's rows are not there
    with pytest.raises(ValueError, match=f"at most {len(x) - 1} rows, got {len(x)}"):
        fill_rows(x, flags)
