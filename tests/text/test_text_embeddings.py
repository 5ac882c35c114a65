"""Bring your own embeddings: a user's own text model, 300 wide, through ``acgate detect``.

The user's model here is trained outside acgate's scan (its own width, its own training
settings); only its last-hidden-layer embeddings reach acgate, as docs/embeddings.md shows.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from acgate.cli import EXIT_BAD_INPUT, EXIT_POISON, main
from acgate.io.activations import ActivationTable, write_activations
from acgate.io.datasets import TextDataset
from acgate.io.loaders import load_rotten_tomatoes
from acgate.io.poison import poison_text_dataset

WIDTH = 300


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue(), stderr.getvalue()


def users_embeddings(dataset: TextDataset) -> np.ndarray:
    """The user's side: their own 300-wide text classifier, and its hidden-layer embeddings."""
    import torch

    from acgate.text import build_vocabulary
    from acgate.torch.extract import extract_activations
    from acgate.torch.models import TextCNN
    from acgate.torch.train import seeded_model, train_model

    vocabulary = build_vocabulary(dataset.texts)
    token_ids = vocabulary.encode(dataset.texts)

    def build():
        model = TextCNN(vocabulary.size, 2, embed_dim=48, n_filters=48, hidden=WIDTH)
        with torch.no_grad():
            model.embedding.weight.uniform_(-0.25, 0.25)
        return model

    model = seeded_model(build, 7)
    train_model(model, token_ids, dataset.labels, epochs=12, lr=1e-3, seed=7)
    activations, _ = extract_activations(model, token_ids)
    return activations


@pytest.fixture(scope="module")
def poisoned_reviews() -> TextDataset:
    reviews = load_rotten_tomatoes()
    rows = np.sort(np.random.default_rng(1).choice(len(reviews), 1200, replace=False))
    subset = TextDataset([reviews.texts[i] for i in rows], reviews.labels[rows])
    return poison_text_dataset(subset, rate=0.1, source=1, target=0, seed=1)


def test_byo_300_wide_embeddings_through_detect(poisoned_reviews, tmp_path):
    embeddings = users_embeddings(poisoned_reviews)
    assert embeddings.shape == (len(poisoned_reviews), WIDTH)
    path = write_activations(tmp_path / "embeddings.parquet", ActivationTable(
        indices=np.arange(len(poisoned_reviews)), labels=poisoned_reviews.labels,
        predictions=None, activations=embeddings, metadata={"model": "users-textcnn-300"}))
    code, stdout, stderr = run_cli(["detect", path, "--out", tmp_path / "out"])
    assert code == EXIT_POISON, stdout + stderr
    flagged = pd.read_parquet(tmp_path / "out" / "samples.parquet").sort_values("index")
    flags = flagged["is_poison"].to_numpy()
    truth = poisoned_reviews.columns["is_poison"]
    f1 = 2 * int((flags & truth).sum()) / (int(flags.sum()) + int(truth.sum()))
    assert f1 >= 0.9, stdout
    # exclusionary reclassification needs the data and a model: refused with a clear message
    code, _, stderr = run_cli(["detect", path, "--out", tmp_path / "exre", "--analysis", "exre"])
    assert code == EXIT_BAD_INPUT and "acgate scan" in stderr
