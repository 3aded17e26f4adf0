"""Pooling, sentence-transformers configuration and fixed-shape tokenization of encoders
(edgesmith.encoders): numpy and tokenizers only, no backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith import encoders
from edgesmith.errors import UserError
from edgesmith.testing.tinybert import wordpiece, write_pooling

HIDDEN = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, -100.0]]])  # the last row is padding
MASK = np.array([[1, 1, 0]])


@pytest.mark.parametrize(("mode", "want"), [("mean", [2.0, 2.0]), ("cls", [1.0, 0.0]), ("max", [3.0, 4.0])])
def test_pooling_modes_ignore_padding(mode, want):
    assert encoders.pool(HIDDEN, MASK, encoders.Pooling(mode)).tolist() == want


def test_normalize_gives_a_unit_vector():
    vec = encoders.pool(HIDDEN, MASK, encoders.Pooling("max", normalize=True))
    assert np.allclose(vec, [0.6, 0.8])


def test_an_empty_mask_is_refused():
    with pytest.raises(UserError, match="no tokens"):
        encoders.pool(HIDDEN, np.zeros((1, 3)), encoders.Pooling())


@pytest.mark.parametrize(("mode", "normalize"), [("mean", True), ("cls", False), ("max", True)])
def test_sentence_transformers_config_is_read(tmp_path, mode, normalize):
    write_pooling(tmp_path, 8, mode, normalize)
    assert encoders.read_pooling(tmp_path) == encoders.Pooling(mode, normalize)


def test_without_config_it_is_mean_pooling(tmp_path):
    assert encoders.read_pooling(tmp_path) == encoders.Pooling("mean", False)


def test_an_unsupported_pooling_mode_is_refused(tmp_path):
    write_pooling(tmp_path, 8)
    cfg = tmp_path / "1_Pooling" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "pooling_mode_mean_tokens": False,
                               "pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(UserError, match="weightedmean"):
        encoders.read_pooling(tmp_path)


def test_encoder_files_travel_with_their_module_folders(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    write_pooling(src, 8, normalize=True)
    wordpiece().save(str(src / "tokenizer.json"))
    copied = encoders.copy_encoder_files(src, dest)
    assert {"tokenizer.json", "modules.json", "1_Pooling/"} <= set(copied)
    assert encoders.read_pooling(dest) == encoders.read_pooling(src)


@pytest.fixture
def encoder_dir(tmp_path):
    wordpiece().save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 64}))
    return tmp_path


SPECS = {"input_ids": ((1, 16), np.int64), "attention_mask": ((1, 16), np.int64),
         "token_type_ids": ((1, 16), np.int64)}


def test_text_is_padded_to_the_fixed_shape_with_a_mask(encoder_dir):
    enc = encoders.TextEncoder(encoder_dir, SPECS).encode("Alice was tired.")
    ids, mask = enc.feed["input_ids"], enc.feed["attention_mask"]
    assert ids.shape == mask.shape == (1, 16) and ids.dtype == np.int64
    assert mask[0, : enc.tokens].all() and not mask[0, enc.tokens:].any()
    pad = wordpiece().token_to_id("[PAD]")
    assert (ids[0, enc.tokens:] == pad).all()
    assert not enc.feed["token_type_ids"].any() and enc.dropped == 0


def test_a_long_text_is_cut_keeping_the_closing_token(encoder_dir):
    tok = wordpiece()
    enc = encoders.TextEncoder(encoder_dir, SPECS).encode("the queen " * 40)
    assert enc.tokens == 16 and enc.dropped > 0
    assert enc.feed["input_ids"][0, -1] == tok.token_to_id("[SEP]")


def test_no_truncation_refuses_a_long_text(encoder_dir):
    with pytest.raises(UserError, match="truncate=false"):
        encoders.TextEncoder(encoder_dir, SPECS, truncate=False).encode("the queen " * 40)


def test_a_dynamic_graph_takes_the_text_as_long_as_it_is(encoder_dir):
    specs = {"input_ids": ((1, None), np.int64), "attention_mask": ((1, None), np.int64)}
    enc = encoders.TextEncoder(encoder_dir, specs).encode("Alice was tired.")
    assert enc.feed["input_ids"].shape == (1, enc.tokens)


def test_embed_pools_the_graph_output(encoder_dir):
    te = encoders.TextEncoder(encoder_dir, SPECS)

    def run(feed):  # a stand-in graph: token vectors are (id, 1)
        ids = feed["input_ids"].astype(np.float32)
        return {"last_hidden_state": np.stack([ids, np.ones_like(ids)], axis=-1)}

    facts = te.embed(run, "Alice was tired.")
    ids = te.encode("Alice was tired.").feed["input_ids"][0, : facts["tokens"]]
    want = np.array([ids.mean(), 1.0])
    assert np.allclose(facts["embedding"], want)  # mean pooling, not normalized: no modules.json


def test_a_graph_without_ids_and_mask_is_refused(encoder_dir):
    with pytest.raises(UserError, match="--input"):
        encoders.TextEncoder(encoder_dir, {"pixel_values": ((1, 3, 8, 8), np.float32)})


def test_sentences_of_the_shipped_text():
    from edgesmith.measure.text import load_text

    found = encoders.sentences(load_text(None)[0])
    assert len(found) > 200
    assert all(len(s.split()) >= 3 and "\n" not in s for s in found)


def test_encoder_detection(encoder_dir, tmp_path_factory):
    assert encoders.is_encoder(encoder_dir)
    other = tmp_path_factory.mktemp("llama")
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert not encoders.is_encoder(other)
