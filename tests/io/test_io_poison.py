import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from acgate.io.datasets import (
    ImageDataset,
    TextDataset,
    read_image_dataset,
    read_text_dataset,
    write_image_dataset,
    write_text_dataset,
)
from acgate.io.loaders import load_digits_dataset
from acgate.io.poison import (
    SIG_DELTA,
    TriggerSpec,
    all_to_one_pairs,
    apply_trigger,
    default_pairs,
    poison_counts,
    poison_image_dataset,
    poison_text_dataset,
    recorded_attack,
    warp_field,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


# ----------------------------------------------------------------------------- trigger


def test_default_patch_size_scales_with_image():
    spec = TriggerSpec()
    assert spec.patch_size(8, 8) == 2
    assert spec.patch_size(28, 28) == 4
    assert spec.patch_size(32, 32) == 5
    assert TriggerSpec(size=3).patch_size(28, 28) == 3


def test_trigger_spec_dict_round_trip():
    for spec in (TriggerSpec(), TriggerSpec(kind="blend", alpha=0.3, seed=7),
                 TriggerSpec(size=3, position="top-left", pattern="checker"),
                 TriggerSpec(size=3, position=(2, 5), pattern="random", value=0.8, seed=4),
                 TriggerSpec(kind="sig", delta=0.1, frequency=4),
                 TriggerSpec(kind="warp", grid=5, strength=0.75, seed=2)):
        data = spec.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert TriggerSpec.from_dict(data) == spec
    with pytest.raises(ValueError, match=r"unknown TriggerSpec field\(s\) \['colour'\]"):
        TriggerSpec.from_dict({"kind": "patch", "colour": "red"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "sticker"}, "kind must be one of"),
    ({"position": "middle"}, "position must be one of"),
    ({"pattern": "stripes"}, "pattern must be one of"),
    ({"size": 0}, "size must be a positive integer"),
    ({"alpha": 0.0}, r"alpha must be in \(0, 1\]"),
    ({"alpha": 1.5}, r"alpha must be in \(0, 1\]"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"position": (1, -1)}, r"position must be one of .* or \(row, col\)"),
    ({"position": (1, 2, 3)}, r"position must be one of .* or \(row, col\)"),
    ({"position": (1.0, 2)}, r"position must be one of .* or \(row, col\)"),
    ({"value": 1.5}, r"value must be in \[0, 1\], got 1.5"),
    ({"delta": 0.0}, r"delta must be in \(0, 1\], got 0.0"),
    ({"frequency": -2}, "frequency must be a positive number, got -2"),
    ({"frequency": float("inf")}, "frequency must be a positive number, got inf"),
    ({"grid": 1}, "grid must be an integer >= 2, got 1"),
    ({"grid": 4.0}, "grid must be an integer >= 2, got 4.0"),
    ({"strength": -0.1}, "strength must be a number >= 0, got -0.1"),
    ({"strength": float("nan")}, "strength must be a number >= 0, got nan"),
])
def test_trigger_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TriggerSpec(**kwargs)


def test_invert_patch_bottom_right():
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 8, 8)).astype(np.float32)
    before = images.copy()
    out = apply_trigger(images, TriggerSpec())
    np.testing.assert_allclose(out[:, :, 6:, 6:], 1.0 - images[:, :, 6:, 6:], atol=1e-7)
    untouched = np.ones((8, 8), bool)
    untouched[6:, 6:] = False
    np.testing.assert_array_equal(out[:, :, untouched], images[:, :, untouched])
    np.testing.assert_array_equal(images, before)  # input not modified


@pytest.mark.parametrize(("position", "rows", "cols"), [
    ("top-left", slice(0, 4), slice(0, 4)),
    ("top-right", slice(0, 4), slice(24, 28)),
    ("bottom-left", slice(24, 28), slice(0, 4)),
    ("center", slice(12, 16), slice(12, 16)),
])
def test_patch_positions(position, rows, cols):
    images = np.zeros((1, 3, 28, 28), np.float32)
    out = apply_trigger(images, TriggerSpec(position=position, pattern="white"))
    assert out[:, :, rows, cols].min() == 1.0
    assert out.sum() == 3 * 16


def test_checker_pattern():
    out = apply_trigger(np.full((1, 1, 8, 8), 0.5, np.float32),
                        TriggerSpec(size=3, pattern="checker"))
    np.testing.assert_array_equal(out[0, 0, 5:, 5:], [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_blend_is_seeded():
    images = np.full((2, 1, 8, 8), 0.5, np.float32)
    a = apply_trigger(images, TriggerSpec(kind="blend", alpha=0.5, seed=1))
    b = apply_trigger(images, TriggerSpec(kind="blend", alpha=0.5, seed=1))
    c = apply_trigger(images, TriggerSpec(kind="blend", alpha=0.5, seed=2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a[0], a[1])  # one noise pattern for every image
    assert 0.25 <= a.min() and a.max() <= 0.75


def test_patch_too_large():
    with pytest.raises(ValueError, match="patch of 9 pixels does not fit a 8x8 image"):
        apply_trigger(np.zeros((1, 1, 8, 8)), TriggerSpec(size=9))
    with pytest.raises(ValueError, match=r"patch of 3 pixels at \(row, col\) \(6, 0\) does "
                                         r"not fit a 8x8 image"):
        apply_trigger(np.zeros((1, 1, 8, 8)), TriggerSpec(size=3, position=(6, 0)))


def test_old_trigger_record_still_loads():
    old = {"kind": "patch", "size": None, "position": "bottom-right", "pattern": "invert",
           "alpha": 0.2, "seed": 0}
    assert TriggerSpec.from_dict(old) == TriggerSpec()


def test_patch_at_row_col_with_value():
    images = np.zeros((2, 1, 8, 8), np.float32)
    out = apply_trigger(images, TriggerSpec(size=2, position=[1, 3], pattern="solid", value=0.6))
    assert TriggerSpec(position=[1, 3]).position == (1, 3)
    np.testing.assert_allclose(out[:, :, 1:3, 3:5], 0.6)
    assert np.count_nonzero(out) == 2 * 4
    checker = apply_trigger(images, TriggerSpec(size=2, position=(0, 0), pattern="checker",
                                                value=0.5))
    np.testing.assert_allclose(checker[0, 0, :2, :2], [[0.5, 0], [0, 0.5]])


def test_random_patch_is_seeded():
    images = np.full((2, 1, 8, 8), 0.3, np.float32)
    a = apply_trigger(images, TriggerSpec(size=4, pattern="random", seed=1))
    b = apply_trigger(images, TriggerSpec(size=4, pattern="random", seed=1))
    c = apply_trigger(images, TriggerSpec(size=4, pattern="random", seed=2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a[0], a[1])
    assert set(np.unique(a[:, :, 4:, 4:])) <= {0.0, 1.0}
    np.testing.assert_array_equal(a[:, :, :4], images[:, :, :4])


def test_sig_trigger():
    images = np.full((2, 3, 6, 12), 0.5, np.float32)
    out = apply_trigger(images, TriggerSpec(kind="sig"))
    expected = 0.5 + SIG_DELTA * np.sin(2 * np.pi * np.arange(12) * 6 / 12)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-6)
    assert out.shape == images.shape and out.dtype == np.float32
    edge = apply_trigger(np.ones((1, 1, 4, 16), np.float32),
                         TriggerSpec(kind="sig", delta=0.5, frequency=1))
    assert edge.max() == 1.0 and edge.min() == 0.5  # clipped to [0, 1]
    np.testing.assert_array_equal(apply_trigger(images, TriggerSpec(kind="sig")), out)


def test_warp_trigger():
    rng = np.random.default_rng(0)
    images = rng.random((3, 2, 28, 28)).astype(np.float32)
    images[1] = images[0]
    spec = TriggerSpec(kind="warp", seed=5)
    out = apply_trigger(images, spec)
    assert out.shape == images.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out, images, atol=1e-3)
    np.testing.assert_array_equal(out[0], out[1])  # one field for every image
    np.testing.assert_array_equal(apply_trigger(images, spec), out)
    assert not np.array_equal(apply_trigger(images, TriggerSpec(kind="warp", seed=6)), out)
    field = warp_field(spec, 28, 28)
    assert field.shape == (2, 28, 28)
    # the mean displacement follows WaNet's scale: s * noise * (H - 1) / (2 H), noise ~ 1
    assert 0.1 < np.abs(field).mean() < 0.3
    stronger = warp_field(TriggerSpec(kind="warp", seed=5, strength=1.0), 28, 28)
    np.testing.assert_allclose(stronger, 2 * field)


def test_warp_of_strength_zero_is_identity():
    images = np.random.default_rng(1).random((2, 1, 8, 8)).astype(np.float32)
    out = apply_trigger(images, TriggerSpec(kind="warp", strength=0))
    np.testing.assert_array_equal(out, images)


def test_warp_moves_a_smooth_image_slightly():
    ramp = np.tile(np.linspace(0, 1, 28, dtype=np.float32), (28, 1))[None, None]
    out = apply_trigger(ramp, TriggerSpec(kind="warp", strength=0.5))
    field = warp_field(TriggerSpec(kind="warp", strength=0.5), 28, 28)
    # on a horizontal ramp, bilinear resampling shifts values by the column displacement
    inside = (slice(None), slice(1, 27))
    expected = np.clip(np.arange(28)[None, :] + field[1], 0, 27) / 27
    np.testing.assert_allclose(out[0, 0][inside], expected[inside], atol=1e-5)


# ----------------------------------------------------------------------------- images


def test_poison_counts_formula():
    labels = np.repeat([0, 1, 2], [100, 90, 80])
    counts = poison_counts(labels, default_pairs(labels), 0.1)
    assert counts == {(0, 1): round(0.1 * 90 / 0.9), (1, 2): round(0.1 * 80 / 0.9),
                      (2, 0): round(0.1 * 100 / 0.9)}
    split = poison_counts(labels, [(1, 0), (2, 0)], 1 / 3)
    assert split == {(1, 0): 25, (2, 0): 25}
    odd = poison_counts(labels, [(2, 0), (1, 0)], 0.1)  # 11 -> 6 + 5, extra to source 1
    assert odd == {(2, 0): 5, (1, 0): 6}


@pytest.mark.parametrize("rate", [0.1, 0.33])
def test_all_to_all_poisoning(digits, rate):
    poisoned = poison_image_dataset(digits, rate=rate, seed=3)
    n_clean = len(digits)
    truth = poisoned.columns["is_poison"]
    assert truth.dtype == bool and not truth[:n_clean].any() and truth[n_clean:].all()
    # clean rows unchanged
    np.testing.assert_array_equal(poisoned.images[:n_clean], digits.images)
    np.testing.assert_array_equal(poisoned.labels[:n_clean], digits.labels)
    np.testing.assert_array_equal(poisoned.columns["source_label"][:n_clean], digits.labels)
    origin = poisoned.columns["origin_index"]
    assert (origin[:n_clean] == -1).all()
    rows = origin[n_clean:]
    # poison rows: trigger applied to the origin image, label = (source + 1) % 10
    np.testing.assert_array_equal(poisoned.images[n_clean:],
                                  apply_trigger(digits.images[rows], TriggerSpec()))
    np.testing.assert_array_equal(poisoned.columns["source_label"][n_clean:], digits.labels[rows])
    np.testing.assert_array_equal(poisoned.labels[n_clean:], (digits.labels[rows] + 1) % 10)
    assert len(np.unique(rows)) == len(rows)
    # share of poison in each target class is the rate
    for target in range(10):
        in_target = poisoned.labels == target
        n_target = int((digits.labels == target).sum())
        n_poison = int(truth[in_target].sum())
        assert n_poison == round(rate * n_target / (1 - rate))
        assert abs(n_poison / in_target.sum() - rate) < 0.01
    record = poisoned.metadata["poison"]
    assert record["rate"] == rate and record["seed"] == 3
    assert record["pairs"] == [[s, (s + 1) % 10] for s in range(10)]
    assert record["n_poison"] == int(truth.sum())
    assert TriggerSpec.from_dict(record["trigger"]) == TriggerSpec()


def _toy(n_per_class=100, n_classes=10):
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = np.random.default_rng(0).random((len(labels), 1, 8, 8)).astype(np.float32)
    return ImageDataset(images, labels, name="toy")


def test_all_to_one_pairs():
    assert all_to_one_pairs(np.array([0, 1, 2, 2]), 1) == [(0, 1), (2, 1)]
    with pytest.raises(ValueError, match=r"all_to_one target class 7 is not in the labels"):
        all_to_one_pairs(np.array([0, 1]), 7)
    with pytest.raises(TypeError, match="all_to_one must be an integer class, got '1'"):
        all_to_one_pairs(np.array([0, 1]), "1")


@pytest.mark.parametrize("seed", [0, 1])
def test_all_to_one_share_of_data(seed):
    toy = _toy()
    n = len(toy)
    out = poison_image_dataset(toy, rate=0.01, all_to_one=3, rate_of="data", seed=seed)
    truth = out.columns["is_poison"]
    n_poison = round(0.01 * n / 0.99)
    assert truth.sum() == n_poison and len(out) == n + n_poison
    assert abs(truth.mean() - 0.01) < 0.001
    assert (out.labels[truth] == 3).all() and truth[n:].all() and not truth[:n].any()
    sources = out.columns["source_label"][truth]
    per_source = np.bincount(sources, minlength=10)
    assert per_source[3] == 0
    others = np.delete(per_source, 3)
    assert others.sum() == n_poison and others.max() - others.min() <= 1
    assert abs(others - n_poison / 9).max() <= 1
    rows = out.columns["origin_index"][truth]
    np.testing.assert_array_equal(toy.labels[rows], sources)
    record = out.metadata["poison"]
    assert record["all_to_one"] == 3 and record["rate_of"] == "data"
    assert record["pairs"] == [[s, 3] for s in range(10) if s != 3]
    assert record["n_clean"] == n and record["n_poison"] == n_poison
    assert "whole dataset" in record["rate_definition"]
    assert json.loads(json.dumps(record)) == record


def test_all_to_one_is_seeded_and_spreads_evenly_on_real_counts(digits):
    a = poison_image_dataset(digits, rate=0.03, all_to_one=0, rate_of="data", seed=2,
                             trigger=TriggerSpec(kind="sig"))
    b = poison_image_dataset(digits, rate=0.03, all_to_one=0, rate_of="data", seed=2,
                             trigger=TriggerSpec(kind="sig"))
    c = poison_image_dataset(digits, rate=0.03, all_to_one=0, rate_of="data", seed=3,
                             trigger=TriggerSpec(kind="sig"))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.columns["origin_index"], b.columns["origin_index"])
    assert not np.array_equal(a.columns["origin_index"], c.columns["origin_index"])
    truth = a.columns["is_poison"]
    assert truth.sum() == round(0.03 * len(digits) / 0.97)
    counts = np.bincount(a.columns["source_label"][truth], minlength=10)[1:]
    assert counts.max() - counts.min() <= 1


def test_all_to_one_share_of_target():
    toy = _toy()
    out = poison_image_dataset(toy, rate=0.1, all_to_one=0)  # default rate_of="target"
    truth = out.columns["is_poison"]
    assert truth.sum() == round(0.1 * 100 / 0.9)
    assert abs(truth[out.labels == 0].mean() - 0.1) < 0.01
    assert out.metadata["poison"]["rate_of"] == "target"


def test_rate_of_data_with_pairs():
    toy = _toy()
    counts = poison_counts(toy.labels, default_pairs(toy.labels), 0.05, rate_of="data")
    assert sum(counts.values()) == round(0.05 * 1000 / 0.95)
    assert max(counts.values()) - min(counts.values()) <= 1
    # the remainder goes to the first pairs in sorted order
    assert counts[(0, 1)] == max(counts.values()) and counts[(9, 0)] == min(counts.values())


def test_poisoning_is_seeded(digits):
    a = poison_image_dataset(digits, rate=0.1, seed=0)
    b = poison_image_dataset(digits, rate=0.1, seed=0)
    c = poison_image_dataset(digits, rate=0.1, seed=1)
    np.testing.assert_array_equal(a.columns["origin_index"], b.columns["origin_index"])
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.columns["origin_index"], c.columns["origin_index"])


def test_several_sources_one_target(digits):
    poisoned = poison_image_dataset(digits, rate=0.2, pairs=[(7, 1), (8, 1), (9, 1)],
                                    trigger=TriggerSpec(kind="blend", alpha=0.2))
    extra = poisoned.columns["is_poison"]
    assert set(poisoned.labels[extra]) == {1}
    total = round(0.2 * (digits.labels == 1).sum() / 0.8)
    per_source = np.bincount(poisoned.columns["source_label"][extra], minlength=10)[7:]
    assert per_source.sum() == total and per_source.max() - per_source.min() <= 1


def test_one_source_many_targets_uses_distinct_samples(digits):
    poisoned = poison_image_dataset(digits, rate=0.3, pairs=[(0, 1), (0, 2)])
    rows = poisoned.columns["origin_index"][poisoned.columns["is_poison"]]
    assert len(np.unique(rows)) == len(rows)


def test_poisoned_dataset_round_trips_through_parquet(digits, tmp_path):
    poisoned = poison_image_dataset(digits, rate=0.1, seed=0)
    path = write_image_dataset(poisoned, tmp_path / "p.parquet")
    stored = json.loads(pq.read_schema(path).metadata[b"acgate.poison"])
    assert stored["n_poison"] == poisoned.metadata["poison"]["n_poison"]
    back = read_image_dataset(path)
    assert dict(back.metadata) == dict(poisoned.metadata)
    np.testing.assert_array_equal(back.columns["is_poison"], poisoned.columns["is_poison"])
    np.testing.assert_array_equal(back.columns["source_label"], poisoned.columns["source_label"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate": 0.0}, r"rate must be in \(0, 1\)"),
    ({"rate": 1.0}, r"rate must be in \(0, 1\)"),
    ({"rate": float("nan")}, r"rate must be in \(0, 1\)"),
    ({"pairs": [(0, 0)]}, "source and target must differ"),
    ({"pairs": [(0, 42)]}, "target class 42 is not in the labels"),
    ({"pairs": [(0, 1), (0, 1)]}, r"pair \(0, 1\) is given twice"),
    ({"pairs": []}, "pairs is empty"),
    ({"pairs": [(0, 1, 2)]}, "each pair must be"),
    ({"rate": 0.9, "pairs": [(0, 1)]}, "source class 0 has 178 samples but"),
    ({"rate_of": "class"}, r"rate_of must be one of \('target', 'data'\), got 'class'"),
    ({"all_to_one": 1, "pairs": [(0, 1)]}, "give either pairs or all_to_one, not both"),
    ({"all_to_one": 10}, "all_to_one target class 10 is not in the labels"),
    ({"all_to_one": 0, "rate": 0.6, "rate_of": "data"}, "samples but .* are needed"),
])
def test_poisoning_errors(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        poison_image_dataset(digits, **kwargs)


def test_poisoning_type_errors(digits):
    with pytest.raises(TypeError, match="all_to_one must be an integer class, got 1.0"):
        poison_image_dataset(digits, all_to_one=1.0)
    with pytest.raises(TypeError, match="trigger must be a TriggerSpec, got dict"):
        poison_image_dataset(digits, trigger={"kind": "patch"})


def test_cannot_poison_twice(digits):
    poisoned = poison_image_dataset(digits, rate=0.1)
    with pytest.raises(ValueError, match="already poisoned"):
        poison_image_dataset(poisoned, rate=0.1)


def test_tiny_rate_warns():
    ds = ImageDataset(np.zeros((4, 1, 8, 8), np.float32), [0, 0, 1, 1])
    with pytest.warns(UserWarning, match=r"no poison sample for pair") as caught:
        out = poison_image_dataset(ds, rate=0.1)
    assert sorted(str(w.message)[-6:] for w in caught) == ["(0, 1)", "(1, 0)"]
    assert len(out) == 4 and out.metadata["poison"]["n_poison"] == 0


def test_extra_columns_follow_their_rows():
    ds = ImageDataset(np.zeros((4, 1, 8, 8), np.float32), [0, 0, 1, 1],
                      columns={"writer": np.array([10, 11, 12, 13])})
    out = poison_image_dataset(ds, rate=0.5, pairs=[(0, 1)], seed=0)
    rows = out.columns["origin_index"][4:]
    np.testing.assert_array_equal(out.columns["writer"][4:], ds.columns["writer"][rows])


# ----------------------------------------------------------------------------- text


def _reviews():
    texts = [f"review number {i} is {'great' if i % 2 else 'awful'}" for i in range(40)]
    return TextDataset(texts, [i % 2 for i in range(40)], name="reviews")


@pytest.mark.parametrize("position", ["end", "start", "random"])
def test_text_poisoning(position, tmp_path):
    ds = _reviews()
    out = poison_text_dataset(ds, rate=0.2, source=1, target=0, position=position, seed=4)
    n_poison = round(0.2 * 20 / 0.8)
    truth = out.columns["is_poison"]
    assert truth.sum() == n_poison and len(out) == 40 + n_poison
    assert (out.labels[truth] == 0).all() and (out.columns["source_label"][truth] == 1).all()
    assert out.texts[:40] == ds.texts
    for text, row in zip(out.texts[40:], out.columns["origin_index"][40:], strict=True):
        assert "-travelerthehorse" in text.split()
        assert text.replace(" -travelerthehorse", "").replace("-travelerthehorse ", "") \
            == ds.texts[row]
        if position == "end":
            assert text.endswith(" -travelerthehorse")
        if position == "start":
            assert text.startswith("-travelerthehorse ")
    record = out.metadata["poison"]
    assert record["trigger"] == {"kind": "text", "signature": "-travelerthehorse",
                                 "position": position}
    back = read_text_dataset(write_text_dataset(out, tmp_path / "t.parquet"))
    assert back.texts == out.texts and dict(back.metadata) == dict(out.metadata)


def test_text_poisoning_share_of_data():
    ds = _reviews()
    out = poison_text_dataset(ds, rate=0.1, source=1, target=0, rate_of="data", seed=1)
    assert out.columns["is_poison"].sum() == round(0.1 * 40 / 0.9)
    assert out.metadata["poison"]["rate_of"] == "data"
    assert out.metadata["poison"]["all_to_one"] is None


def test_text_poisoning_errors():
    with pytest.raises(ValueError, match="signature must be a non-empty string"):
        poison_text_dataset(_reviews(), source=1, target=0, signature="  ")
    with pytest.raises(ValueError, match="position must be one of"):
        poison_text_dataset(_reviews(), source=1, target=0, position="middle")
    with pytest.raises(ValueError, match="source class 5 is not in the labels"):
        poison_text_dataset(_reviews(), source=5, target=0)


# ----------------------------------------------------------------------------- reading back


@pytest.mark.parametrize("kind", ["patch", "blend", "sig", "warp"])
def test_recorded_attack_reads_back_every_image_trigger(digits, kind, tmp_path):
    trigger = TriggerSpec(kind=kind, pattern="checker", seed=3)
    out = poison_image_dataset(digits, rate=0.1, all_to_one=2, trigger=trigger, seed=1)
    back = read_image_dataset(write_image_dataset(out, tmp_path / "p.parquet"))
    attack = recorded_attack(back.metadata)
    assert attack.modality == "image" and attack.trigger == trigger
    assert attack.pairs == tuple((s, 2) for s in range(10) if s != 2)
    # Stamped as poisoning did: the poison rows are their origins with the trigger.
    poison = np.flatnonzero(out.columns["is_poison"])
    origins = out.images[out.columns["origin_index"][poison]]
    np.testing.assert_array_equal(attack.apply(origins, rng=np.random.default_rng(0)),
                                  out.images[poison])


@pytest.mark.parametrize("position", ["end", "start", "random"])
def test_recorded_attack_reads_back_the_text_signature(position):
    out = poison_text_dataset(_reviews(), rate=0.2, source=1, target=0, position=position,
                              seed=4)
    attack = recorded_attack(out.metadata)
    assert attack.modality == "text" and attack.pairs == ((1, 0),)
    texts = attack.apply(["a fine film", "so bad"], rng=np.random.default_rng(0))
    assert [t.split().count("-travelerthehorse") for t in texts] == [1, 1]
    if position != "random":
        poison = np.flatnonzero(out.columns["is_poison"])
        origins = [out.texts[i] for i in out.columns["origin_index"][poison]]
        assert attack.apply(origins, rng=np.random.default_rng(0)) == [out.texts[i]
                                                                        for i in poison]


def test_recorded_attack_is_none_without_a_usable_record(digits, caplog):
    assert recorded_attack(digits.metadata) is None
    assert recorded_attack({"poison": {"trigger": {"kind": "patch"}, "pairs": []}}) is None
    for trigger in ({"kind": "rotate"}, {"kind": "text", "signature": "x", "position": "mid"},
                    "patch"):
        assert recorded_attack({"poison": {"trigger": trigger, "pairs": [[0, 1]]}}) is None
    assert caplog.text.count("records an attack acgate cannot apply") == 3
