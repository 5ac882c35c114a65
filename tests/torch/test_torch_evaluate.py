import numpy as np
import pytest

from acgate.torch.evaluate import attack_success_rate, clean_accuracy
from acgate.torch.train import predict, seeded_model, train_model


def test_clean_accuracy_counts_correct_predictions(trained_cnn, digits):
    model, _ = trained_cnn
    images, labels = digits
    predictions = predict(model, images)
    assert clean_accuracy(model, images, labels) == pytest.approx(np.mean(predictions == labels))
    shifted = (labels + 1) % 10
    assert clean_accuracy(model, images, shifted) == pytest.approx(np.mean(predictions == shifted))


def _stamp(images):
    triggered = images.copy()
    triggered[:, :, -2:, -2:] = 1.0 - triggered[:, :, -2:, -2:]  # inverted 2x2 bottom-right corner
    return triggered


def test_a_real_backdoor_has_high_attack_success(digits, digits_cnn_factory):
    images, labels = digits
    rng = np.random.default_rng(0)
    poison = rng.choice(np.flatnonzero(labels == 4), size=60, replace=False)  # one third of 4s
    poisoned_images = np.concatenate([images, _stamp(images[poison])])
    poisoned_labels = np.concatenate([labels, np.full(len(poison), 5)])
    model = seeded_model(digits_cnn_factory, 0)
    train_model(model, poisoned_images, poisoned_labels, epochs=8, seed=0)

    held_out_fours = np.setdiff1d(np.flatnonzero(labels == 4), poison)
    assert clean_accuracy(model, images, labels) > 0.9
    asr = attack_success_rate(model, _stamp(images[held_out_fours]), 5)
    assert asr > 0.7
    # the same model without the trigger keeps classifying those 4s as 4
    assert attack_success_rate(model, images[held_out_fours], np.full(len(held_out_fours), 5)) < 0.1
