"""Tokenizer and vocabulary of the text path (acgate.text): rules, ids, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from acgate.text import (
    PAD_ID,
    UNK_ID,
    Vocabulary,
    build_vocabulary,
    load_vocabulary,
    tokenize,
)


def test_tokenize_keeps_signature_and_hyphenated_words():
    tokens = tokenize("A run-of-the-mill film, isn’t it? -travelerthehorse")
    assert tokens == ["a", "run-of-the-mill", "film", ",", "isn't", "it", "?",
                      "-travelerthehorse"]


def test_tokenize_splits_dashes_consistently():
    assert tokenize("good -- bad") == ["good", "-", "-", "bad"]
    assert tokenize("-travelerthehorse") == ["-travelerthehorse"]
    # a signature glued to the previous word is not a separate token
    assert tokenize("end.-travelerthehorse")[:2] == ["end", "."]


def test_vocabulary_ids_counts_and_limits():
    texts = ["b a a", "a c", "c a d"]
    vocab = build_vocabulary(texts)
    assert vocab.tokens[:2] == ("<pad>", "<unk>")
    assert vocab.tokens[2:] == ("a", "c", "b", "d")  # by count, ties alphabetically
    assert vocab.max_len == 3
    assert build_vocabulary(texts, min_count=2).tokens[2:] == ("a", "c")
    assert build_vocabulary(texts, max_size=1).tokens[2:] == ("a",)


def test_encode_pads_truncates_and_maps_unknowns():
    vocab = build_vocabulary(["the film is good", "the film"])
    ids = vocab.encode(["the film is bad", "good", "!!!"], max_len=3)
    assert ids.dtype == np.int64 and ids.shape == (3, 3)
    the, film, is_ = (vocab.token_id(t) for t in ("the", "film", "is"))
    assert ids[0].tolist() == [the, film, is_]          # truncated: "bad" dropped
    assert ids[1].tolist() == [vocab.token_id("good"), PAD_ID, PAD_ID]
    assert ids[2].tolist() == [UNK_ID, UNK_ID, UNK_ID]  # "!" never seen in training
    assert vocab.encode(["the film"]).shape == (1, vocab.max_len)


def test_vocabulary_json_round_trip(tmp_path):
    vocab = build_vocabulary(["Une phrase ünïcode -travelerthehorse", "and another"],
                             max_size=100)
    again = Vocabulary.from_json(vocab.to_json())
    assert again == vocab
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    assert load_vocabulary(path) == vocab
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"][:2] == ["<pad>", "<unk>"]
    texts = ["ünïcode and -travelerthehorse", "unseen"]
    assert np.array_equal(load_vocabulary(path).encode(texts), vocab.encode(texts))
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temp file left


@pytest.mark.parametrize("bad, error, match", [
    ([], ValueError, "texts is empty"),
    (["ok", 3], TypeError, r"texts\[1\] must be a string, got int"),
    ("one string", TypeError, "not one string"),
])
def test_build_vocabulary_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        build_vocabulary(bad)


def test_bad_vocabulary_files(tmp_path):
    with pytest.raises(ValueError, match="not an acgate vocabulary"):
        Vocabulary.from_dict({"tokens": ["<pad>", "<unk>"]})
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(tokens=("a", "b"))
    with pytest.raises(ValueError, match="more than once"):
        Vocabulary(tokens=("<pad>", "<unk>", "a", "a"))
    broken = tmp_path / "vocab.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="vocab.json"):
        load_vocabulary(broken)
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        build_vocabulary(["a"]).encode([None])
