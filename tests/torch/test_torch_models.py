from typing import get_args

import pytest
import torch
from torch import nn

from acgate.torch.models import (
    MLP,
    PROXY_BUILDERS,
    ProxyName,
    SmallCNN,
    TextCNN,
    build_proxy,
)


@pytest.mark.parametrize("hw", [(8, 8), (28, 28), (1, 1), (3, 3), (5, 7), (32, 32)])
def test_small_cnn_output_shape_for_any_image_size(hw):
    model = SmallCNN(in_channels=3, image_hw=hw, n_classes=7, hidden=16)
    logits = model(torch.zeros(4, 3, *hw))
    assert logits.shape == (4, 7)


def test_small_cnn_layers_are_the_papers():
    model = SmallCNN(1, 28, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(64 * 7 * 7, 128), (128, 10)]
    assert SmallCNN(1, 8, 10).hidden.in_features == 64 * 2 * 2


def test_mlp_flattens_and_allows_no_hidden_layer():
    assert MLP(64, 10, hidden=(32, 16))(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    logistic = MLP(64, 10, hidden=())
    assert [type(m) for m in logistic.modules()][-1] is nn.Linear
    assert logistic(torch.zeros(2, 64)).shape == (2, 10)


def test_textcnn_takes_token_ids_shorter_than_its_widest_filter():
    model = TextCNN(vocab_size=50, n_classes=2).eval()
    assert model(torch.randint(1, 50, (3, 2))).shape == (3, 2)
    assert model(torch.randint(1, 50, (3, 40))).shape == (3, 2)
    # the pad id embeds to zero, so right-padding with it leaves max-over-time of ReLU unchanged
    assert torch.all(model.embedding.weight[0] == 0)


@pytest.mark.parametrize(
    ("name", "shape", "kwargs", "sample"),
    [
        ("cnn", (1, 8, 8), {}, torch.zeros(2, 1, 8, 8)),
        ("cnn", (28, 28), {"hidden": 32}, torch.zeros(2, 1, 28, 28)),
        ("mlp", (1, 8, 8), {"hidden": (20,)}, torch.zeros(2, 1, 8, 8)),
        ("textcnn", (30,), {"vocab_size": 100}, torch.ones(2, 30, dtype=torch.int64)),
    ],
)
def test_build_proxy_builds_each_model_ending_in_its_output_linear(name, shape, kwargs, sample):
    model = build_proxy(name, shape, 10, **kwargs)
    assert model.eval()(sample).shape == (2, 10)
    last_name, last = list(model.named_modules())[-1]
    assert last_name == "output" and isinstance(last, nn.Linear) and last.out_features == 10


def test_registry_matches_the_literal():
    assert set(PROXY_BUILDERS) == set(get_args(ProxyName))


def test_build_proxy_errors_quote_the_problem():
    with pytest.raises(ValueError, match="'resnet'"):
        build_proxy("resnet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_proxy("cnn", (64,), 10)
    with pytest.raises(TypeError, match="vocab_size"):
        build_proxy("textcnn", (30,), 2)
    with pytest.raises(TypeError, match="widht"):
        build_proxy("cnn", (1, 8, 8), 10, widht=3)
    with pytest.raises(ValueError, match="n_classes"):
        build_proxy("mlp", (4,), 0)
