import numpy as np
import pytest

from acgate.torch.exre import make_retrain_and_predict


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
