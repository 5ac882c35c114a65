"""Tokenizer and vocabulary of the text path (acgate.text): rules, ids, JSON round trip."""

from __future__ import annotations

import json
import os
import threading
import warnings

import numpy as np
import pytest

from acgate.text import (
    DEFAULT_MAX_LEN_CAP,
    PAD_ID,
    UNK_ID,
    TextTruncationWarning,
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
    with pytest.warns(TextTruncationWarning, match="1 of 3 text"):
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


# ----------------------------------------------------------------------------- truncation


def _text(n_tokens, tail="-travelerthehorse"):
    return " ".join(["word"] * (n_tokens - 1) + [tail])


def test_truncation_at_the_default_cap_warns_with_counts_and_longest():
    texts = [_text(10), _text(300), _text(DEFAULT_MAX_LEN_CAP + 1), _text(20)]
    vocab = build_vocabulary(texts)
    assert vocab.max_len == DEFAULT_MAX_LEN_CAP == 256
    with pytest.warns(TextTruncationWarning) as caught:
        ids = vocab.encode(texts)
    message = str(caught[0].message)
    assert message.startswith("2 of 4 text(s) have more than 256 tokens (the longest 300, first "
                              "in row 1) and were truncated")
    assert "max_len_cap=" in message and "--max-tokens" in message
    signature = vocab.token_id("-travelerthehorse")
    assert signature not in ids[1] and signature in ids[0]  # the late trigger is lost


def test_raising_the_cap_keeps_late_tokens_without_warning():
    texts = [_text(10), _text(300)]
    vocab = build_vocabulary(texts, max_len_cap=400)
    assert vocab.max_len == 300
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTruncationWarning)
        ids = vocab.encode(texts)
    assert vocab.token_id("-travelerthehorse") in ids[1]


def test_no_warning_when_every_text_fits():
    texts = ["a short text", "another one"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTruncationWarning)
        build_vocabulary(texts).encode(texts)


def test_fifo_vocabulary_is_refused_without_hanging(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("os.mkfifo is not available on this platform")
    fifo = tmp_path / "vocab.json"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            load_vocabulary(fifo)
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome["error"] = error

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock the stuck reader
        pytest.fail("load_vocabulary opened a FIFO and blocked")
    assert isinstance(outcome.get("error"), ValueError)
    assert str(outcome["error"]) == (f"{fifo} is not a regular file; a vocabulary must be a "
                                     "JSON file")
    with pytest.raises(FileNotFoundError, match="nothing.json does not exist"):
        load_vocabulary(tmp_path / "nothing.json")
