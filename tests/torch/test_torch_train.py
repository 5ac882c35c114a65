import warnings

import numpy as np
import pytest
import torch

from acgate.torch.models import MLP, TextCNN
from acgate.torch.train import (
    FineTuneStats,
    TrainStats,
    accuracy,
    fine_tune,
    predict,
    predict_proba,
    seeded_model,
    train_model,
)


def make_mlp():
    return MLP(64, 10, hidden=(32,))


def test_cnn_learns_the_digits_in_a_few_epochs(trained_cnn, digits):
    model, stats = trained_cnn
    images, labels = digits
    assert isinstance(stats, TrainStats)
    assert stats.epochs == 5
    assert stats.train_accuracy > 0.9
    # running accuracy of the last epoch, close to the final weights' eval-mode accuracy
    assert stats.train_accuracy == pytest.approx(accuracy(model, images, labels), abs=0.05)
    assert accuracy(model, images, labels) > 0.9
    assert 0 < stats.final_loss < 0.5
    assert stats.seconds > 0


def _train(factory, digits, seed, n=600, epochs=2):
    images, labels = digits
    model = seeded_model(factory, seed)
    train_model(model, images[:n], labels[:n], epochs=epochs, batch_size=32, seed=seed)
    return model


def test_same_seed_gives_bit_identical_weights(digits, digits_cnn_factory):
    first = _train(digits_cnn_factory, digits, seed=3)
    second = _train(digits_cnn_factory, digits, seed=3)
    other = _train(digits_cnn_factory, digits, seed=4)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert not all(torch.equal(t, other.state_dict()[n]) for n, t in first.state_dict().items())


def test_same_init_different_shuffle_seed_differs(digits, digits_cnn_factory):
    images, labels = digits
    one = seeded_model(digits_cnn_factory, 0)
    two = seeded_model(digits_cnn_factory, 0)
    assert all(torch.equal(a, b) for a, b in zip(one.parameters(), two.parameters()))
    train_model(one, images[:300], labels[:300], epochs=1, seed=1)
    train_model(two, images[:300], labels[:300], epochs=1, seed=2)
    assert not torch.equal(one.output.weight, two.output.weight)


def test_training_leaves_the_global_rng_and_model_mode_alone(digits):
    images, labels = digits
    model = seeded_model(make_mlp, 0).eval()
    state = torch.random.get_rng_state()
    train_model(model, images[:200], labels[:200], epochs=1, seed=5)
    seeded_model(make_mlp, 9)
    assert torch.equal(state, torch.random.get_rng_state())
    assert not model.training


def test_zero_sample_weight_hides_a_class(digits):
    images, labels = digits
    weights = np.where(labels == 3, 0.0, 1.0)
    model = seeded_model(make_mlp, 0)
    train_model(model, images, labels, epochs=8, seed=0, sample_weight=weights)
    threes = labels == 3
    assert np.mean(predict(model, images[threes]) == 3) < 0.1
    assert accuracy(model, images[~threes], labels[~threes]) > 0.85


def test_predict_proba_rows_are_distributions_matching_predict(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    probabilities = predict_proba(model, images[:100], batch_size=7)
    assert probabilities.shape == (100, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), predict(model, images[:100]))


def test_fine_tune_converges_before_max_epochs(digits):
    images, labels = digits
    model = seeded_model(make_mlp, 0)
    before = train_model(model, images, labels, epochs=10, seed=0)
    stats = fine_tune(model, images, labels, max_epochs=200, tol=0.002, patience=2, seed=1)
    assert isinstance(stats, FineTuneStats)
    assert stats.converged and 3 <= stats.epochs < 200
    assert stats.final_loss < before.final_loss / 2
    assert stats.train_accuracy > max(0.97, before.train_accuracy)

    strict = fine_tune(model, images[:200], labels[:200], max_epochs=3, tol=0.0, seed=1)
    assert not strict.converged and strict.epochs == 3


def test_progress_bar_goes_to_stderr(digits, capsys):
    images, labels = digits
    train_model(seeded_model(make_mlp, 0), images[:64], labels[:64], epochs=2, progress=True)
    captured = capsys.readouterr()
    assert "train" in captured.err and "epoch" in captured.err
    # Nothing of the bar on stdout. (Whitespace only can be another library's leftover tqdm
    # bar clearing its line when it is collected during this test: seen once in CI.)
    assert captured.out.strip() == ""


def test_bad_inputs_are_refused_with_the_offending_value(digits):
    images, labels = digits
    model = seeded_model(make_mlp, 0)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        train_model(model, images[:10], labels[:9], epochs=1)
    with pytest.raises(ValueError, match="label 12"):
        train_model(model, images[:10], np.full(10, 12), epochs=1)
    with pytest.raises(TypeError, match="integers"):
        train_model(model, images[:10], labels[:10].astype(float), epochs=1)
    bad = images[:10].copy()
    bad[4, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="sample 4"):
        train_model(model, bad, labels[:10], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_model(model, images[:10], labels[:10], epochs=0)
    with pytest.raises(ValueError, match="sample_weight"):
        train_model(model, images[:10], labels[:10], epochs=1, sample_weight=-np.ones(10))
    with pytest.raises(TypeError, match="numpy array"):
        train_model(model, images[:10].tolist(), labels[:10], epochs=1)


def test_textcnn_training_with_dropout_is_deterministic():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 60, size=(200, 12))
    labels = (tokens[:, 0] > 30).astype(np.int64)  # learnable from the first token

    def run(seed):
        model = seeded_model(lambda: TextCNN(60, 2, n_filters=8, hidden=8), 0)
        train_model(model, tokens, labels, epochs=2, seed=seed)
        return model.state_dict()

    first, second, other = run(1), run(1), run(2)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_a_read_only_input_array_raises_no_warning(trained_cnn, digits):
    # Arrays decoded from Parquet or memory-mapped are read-only; predicting on them must not
    # pass torch's "not writable" UserWarning on to the user.
    images = np.array(digits[0][:32])
    images.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictions = predict(trained_cnn[0], images)
    assert predictions.shape == (32,)
