import logging

import numpy as np
import pytest

from acgate.torch import exre
from acgate.torch.exre import MIN_CLASS_ROWS, make_retrain_and_predict, sampled_rows


@pytest.fixture(scope="module")
def retrain_and_predict(digits, digits_cnn_factory):
    images, labels = digits
    return make_retrain_and_predict(
        images, labels, model_factory=digits_cnn_factory, epochs=4, batch_size=64, lr=2e-3, seed=0
    )


def test_shape_and_probabilities(retrain_and_predict, digits):
    _, labels = digits
    query = np.array([0, 5, 17, 1796])
    probabilities = retrain_and_predict(np.ones(len(labels), dtype=bool), query)
    assert probabilities.shape == (4, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    empty = retrain_and_predict(np.ones(len(labels), dtype=bool), np.array([], dtype=np.int64))
    assert empty.shape == (0, 10)


def test_excluding_a_class_changes_its_predictions(retrain_and_predict, digits, digits_cnn_factory):
    images, labels = digits
    sevens = np.flatnonzero(labels == 7)
    with_all = retrain_and_predict(np.ones(len(labels), dtype=bool), sevens)
    without_sevens = retrain_and_predict(labels != 7, sevens)
    assert np.mean(with_all.argmax(axis=1) == 7) > 0.85
    assert np.mean(without_sevens.argmax(axis=1) == 7) < 0.05
    # exclusionary reclassification's view: the left-out samples go to other classes
    assert np.bincount(without_sevens.argmax(axis=1), minlength=10)[7] < len(sevens) * 0.05

    # a fresh callable with the same seed retrains to the very same probabilities
    again = make_retrain_and_predict(
        images, labels, model_factory=digits_cnn_factory, epochs=4, batch_size=64, lr=2e-3, seed=0
    )
    np.testing.assert_array_equal(again(labels != 7, sevens), without_sevens)


def test_bad_mask_and_positions_are_refused(retrain_and_predict, digits):
    _, labels = digits
    full = np.ones(len(labels), dtype=bool)
    with pytest.raises(ValueError, match=r"bool array of shape \(1797,\)"):
        retrain_and_predict(np.ones(10, dtype=bool), np.array([0]))
    with pytest.raises(ValueError, match="bool"):
        retrain_and_predict(full.astype(int), np.array([0]))
    with pytest.raises(ValueError, match="no samples"):
        retrain_and_predict(np.zeros(len(labels), dtype=bool), np.array([0]))
    with pytest.raises(ValueError, match="query position 1797"):
        retrain_and_predict(full, np.array([3, 1797]))
    with pytest.raises(ValueError, match="1-D int"):
        retrain_and_predict(full, np.array([0.5]))


def test_bad_construction_is_refused(digits, digits_cnn_factory):
    images, labels = digits
    with pytest.raises(ValueError, match=r"shape \(1797,\)"):
        make_retrain_and_predict(images, labels[:-1], model_factory=digits_cnn_factory, epochs=1)
    with pytest.raises(TypeError, match="callable"):
        make_retrain_and_predict(images, labels, model_factory=None, epochs=1)


def test_sampled_rows_keep_each_class_share_of_the_cap():
    labels = np.repeat(np.arange(4), [30_000, 20_000, 10_000, 300])
    mask = np.ones(len(labels), dtype=bool)
    mask[::5] = False  # rows left out stay out
    assert sampled_rows(mask, labels, None) is mask
    assert sampled_rows(mask, labels, int(mask.sum())) is mask
    rows = sampled_rows(mask, labels, 30_000, seed=3)
    assert not (rows & ~mask).any()
    kept = mask.sum()
    for label, count in enumerate(np.bincount(labels[mask])):
        share = max(round(30_000 * count / kept), MIN_CLASS_ROWS)
        assert (rows & (labels == label)).sum() == min(share, count), label  # 240: kept whole
    assert np.array_equal(rows, sampled_rows(mask.copy(), labels, 30_000, seed=3))
    assert not np.array_equal(rows, sampled_rows(mask, labels, 30_000, seed=4))


def test_a_capped_retrain_trains_on_the_sample_and_answers_its_mask_again(
        digits, digits_cnn_factory, caplog, monkeypatch):
    images, labels = digits
    monkeypatch.setattr(exre, "MIN_CLASS_ROWS", 40)  # digits classes hold ~180 rows
    retrain = make_retrain_and_predict(images, labels, model_factory=digits_cnn_factory,
                                       epochs=4, batch_size=64, lr=2e-3, seed=0, max_rows=900)
    sevens = np.flatnonzero(labels == 7)
    mask = labels != 7
    with caplog.at_level(logging.INFO, logger="acgate.torch.exre"):
        first = retrain(mask, sevens)
        again = retrain(mask.copy(), sevens)
        embedded = retrain.activations(mask, sevens)
    trained = [r.getMessage() for r in caplog.records if "retrained on" in r.getMessage()]
    n_rows = int(sampled_rows(mask, labels, 900).sum())
    assert 890 <= n_rows <= 910
    assert len(trained) == 1 and f"retrained on {n_rows} of 1797 samples" in trained[0]
    np.testing.assert_array_equal(first, again)
    assert embedded.shape[0] == len(sevens)
    assert np.mean(first.argmax(axis=1) == 7) < 0.05  # left out, the sevens leave their label
    with pytest.raises(ValueError, match="max_rows"):
        make_retrain_and_predict(images, labels, model_factory=digits_cnn_factory, epochs=1,
                                 max_rows=0)
