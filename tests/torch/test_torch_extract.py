import numpy as np
import pytest
import torch
from torch import nn

from acgate.torch.extract import extract_activations, iter_activations, last_hidden_layer_name
from acgate.torch.models import MLP, TextCNN
from acgate.torch.train import predict, seeded_model, train_model


def test_last_hidden_layer_name_is_the_final_linear(trained_cnn):
    model, _ = trained_cnn
    assert last_hidden_layer_name(model) == "output"
    assert last_hidden_layer_name(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))) == "2"
    with pytest.raises(ValueError, match=r"no nn.Linear.*'0', '1'"):
        last_hidden_layer_name(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))


def test_activations_are_the_input_of_the_final_linear(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    activations, predictions = extract_activations(model, images, batch_size=100)
    assert activations.shape == (len(images), 128) and activations.dtype == np.float32
    assert predictions.dtype == np.int64
    # a manual forward pass through the SmallCNN's layers up to the last hidden layer
    with torch.no_grad():
        x = torch.from_numpy(images)
        hidden = torch.relu(model.hidden(torch.flatten(model.features(x), 1))).numpy()
        logits = model(x)
        relogits = model.output(torch.from_numpy(activations))
    np.testing.assert_allclose(activations, hidden, rtol=1e-5, atol=1e-6)
    # and the final Linear applied to them gives the model's logits: they are its input
    np.testing.assert_allclose(relogits.numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)
    assert (activations >= 0).all() and (activations > 0).any()
    np.testing.assert_array_equal(predictions, predict(model, images))


def test_same_seed_gives_identical_activations(digits, digits_cnn_factory):
    images, labels = digits
    runs = []
    for _ in range(2):
        model = seeded_model(digits_cnn_factory, 11)
        train_model(model, images[:400], labels[:400], epochs=1, seed=11)
        runs.append(extract_activations(model, images[:300]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_batching_does_not_change_the_activations(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    whole, _ = extract_activations(model, images[:90], batch_size=90)
    pieces = list(iter_activations(model, images[:90], batch_size=16))
    assert [len(a) for a, _ in pieces] == [16] * 5 + [10]
    np.testing.assert_allclose(np.concatenate([a for a, _ in pieces]), whole, rtol=1e-5, atol=1e-6)


def test_named_layer_defaults_to_its_output_and_can_take_its_input(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    features, _ = extract_activations(model, images[:20], layer="features")
    assert features.shape == (20, 64 * 2 * 2)
    hidden_input, _ = extract_activations(model, images[:20], layer="hidden", capture="input")
    np.testing.assert_array_equal(features, hidden_input)
    with pytest.warns(UserWarning, match="logits"):
        logits, _ = extract_activations(model, images[:20], layer="output")
    assert logits.shape == (20, 10)


def test_bad_layer_name_lists_the_available_modules(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    with pytest.raises(
        ValueError, match=r"no module named 'fc2'.*'features', 'features.0'.*'output'"
    ):
        extract_activations(model, images[:4], layer="fc2")
    with pytest.raises(ValueError, match="capture"):
        extract_activations(model, images[:4], capture="middle")


def test_hooks_mode_and_grad_state_are_restored_even_when_abandoned(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    model.train()
    try:
        iterator = iter_activations(model, images, batch_size=50)
        next(iterator)  # abandon after one batch
        assert all(not m._forward_hooks for m in model.modules())
        assert model.training
        assert torch.is_grad_enabled()
    finally:
        model.eval()


def test_layer_that_does_not_run_is_an_error(digits):
    images, _ = digits

    class SkipsALayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(64, 64)
            self.output = nn.Linear(64, 10)

        def forward(self, x):
            return self.output(torch.flatten(x, 1))

    model = SkipsALayer()
    with pytest.raises(ValueError, match="'unused' ran 0 times"):
        extract_activations(model, images[:4], layer="unused")
    assert not model.unused._forward_hooks


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
def test_torchscript_model_is_refused(trained_cnn, digits):
    model, _ = trained_cnn
    images, _ = digits
    with pytest.raises(TypeError, match="TorchScript"):
        extract_activations(torch.jit.script(model), images[:4])


def test_textcnn_and_mlp_give_their_hidden_width():
    tokens = np.random.default_rng(0).integers(1, 30, size=(12, 9))
    activations, predictions = extract_activations(TextCNN(30, 2, hidden=24), tokens)
    assert activations.shape == (12, 24) and predictions.shape == (12,)
    flat = np.random.default_rng(1).random((6, 5), dtype=np.float32)
    # logistic regression: the last hidden representation is the (flattened) input itself
    activations, _ = extract_activations(MLP(5, 3, hidden=()), flat)
    np.testing.assert_array_equal(activations, flat)
    assert not np.shares_memory(activations, flat)
