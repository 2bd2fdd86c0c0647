"""Tests of actlab.data: corpus loading, tokenizers, splits and batches, user-facing errors."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import actlab.data.tokenizer as tokmod
from actlab.data import (
    BUNDLED_PLAYS,
    BUNDLED_SHA256,
    Batcher,
    BPETokenizer,
    DataBundle,
    Tokenizer,
    build_tokenizer,
    check_length,
    corpus_hash,
    eval_batches,
    load_corpus,
    prepare,
    split_ids,
)
from actlab.errors import ActlabError

REPO = Path(__file__).resolve().parent.parent

SMALL_TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles\n"
    "And by opposing end them. To die—to sleep,\n"
    "No more; and by a sleep to say we end\n"
    "The heart-ache and the thousand natural shocks\n"
    "That flesh is heir to: 'tis a consummation\n"
    "Devoutly to be wish'd. Ünïcödé ✓ 日本語\n"
) * 20


def one_line_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ActlabError)
    assert msg and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# ---------------------------------------------------------------- bundled corpus

def test_bundled_corpus_loads_and_is_stable():
    text, name = load_corpus(None)
    assert name == "shakespeare"
    assert len(text.encode("utf-8")) > 1_000_000
    assert text.count("\nACT I\n") + text.startswith("ACT I\n") == BUNDLED_PLAYS == 38
    assert text.startswith("A Midsummer Night's Dream\n\nACT I\n")
    assert "\nHamlet\n\nACT I\n" in text and "\nHAMLET:\nTo be, or not to be" in text
    for markup in ("**", "\\[", "\n#"):
        assert markup not in text
    assert corpus_hash(text) == BUNDLED_SHA256
    assert corpus_hash(load_corpus(None)[0]) == BUNDLED_SHA256


def test_corpus_hash_is_sha256_of_utf8():
    import hashlib

    assert corpus_hash("héllo") == hashlib.sha256("héllo".encode("utf-8")).hexdigest()


def test_conversion_of_markdown(tmp_path):
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "scripts" / "make_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    md = ("# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_Enter BERNARDO_\n\n"
          "**BERNARDO**  \nWho's there?  \nStand,   ho!\n\n\n\n_\\[Aside]_  \n**A: & B:**  \nHe.\n")
    title, text = mod.convert_play(md, "hamlet.md")
    assert title == "Hamlet"
    assert text == ("Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\nEnter BERNARDO\n\n"
                    "BERNARDO:\nWho's there?\nStand, ho!\n\n[Aside]\nA: & B:\nHe.\n")
    assert mod.convert_play("## ACT I\n", "measure-for-measure.md")[0] == "Measure for Measure"
    gz = mod.gzip_bytes("abc")
    assert gz == mod.gzip_bytes("abc") and gz[4:8] == b"\x00\x00\x00\x00"  # mtime 0


# ---------------------------------------------------------------- user files and folders

def test_load_file_and_folder(tmp_path):
    f = tmp_path / "my text.txt"
    f.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    text, name = load_corpus(f)
    assert (text, name) == ("line one\nline two\n", "my text.txt")
    assert load_corpus(str(f)) == (text, name)

    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    (folder / "b.txt").write_text("B", encoding="utf-8")
    (folder / "a.txt").write_text("A", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("C", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    (folder / ".hidden" / "d.txt").write_text("hidden", encoding="utf-8")
    text, name = load_corpus(folder)
    assert name == "books"
    assert text == "A\n\nB\n\nC"


def test_error_missing_path(tmp_path):
    p = tmp_path / "nope.txt"
    with pytest.raises(ActlabError) as e:
        load_corpus(p)
    one_line_error(e, str(p), "no such file")


def test_error_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(ActlabError) as e:
        load_corpus(p)
    one_line_error(e, str(p), "empty")


def test_error_binary_file(tmp_path):
    p = tmp_path / "model.txt"
    p.write_bytes(b"abc\x00\x01\x02def")
    with pytest.raises(ActlabError) as e:
        load_corpus(p)
    one_line_error(e, str(p), "binary")


def test_error_not_utf8(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ActlabError) as e:
        load_corpus(p)
    one_line_error(e, str(p), "is not UTF-8 text")


def test_error_not_utf8_inside_folder(tmp_path):
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe\xfa")
    with pytest.raises(ActlabError) as e:
        load_corpus(tmp_path)
    one_line_error(e, "bad.txt", "is not UTF-8 text")


def test_error_folder_without_txt(tmp_path):
    (tmp_path / "readme.md").write_text("not a txt", encoding="utf-8")
    with pytest.raises(ActlabError) as e:
        load_corpus(tmp_path)
    one_line_error(e, str(tmp_path), "no .txt")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ActlabError) as e:
        load_corpus(empty)
    one_line_error(e, str(empty), "no .txt")


# ---------------------------------------------------------------- tokenizers

def test_char_tokenizer_round_trip_and_unknown():
    text = "héllo ✓ wörld\n日本"
    tok = build_tokenizer("char", text)
    assert isinstance(tok, Tokenizer) and tok.kind == "char"
    assert tok.vocab_size == len(set(text)) + 1  # + id 0 for unknown characters
    ids = tok.encode(text)
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert min(ids) >= 1 and max(ids) < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.encode("hé€") == [tok.encode("h")[0], tok.encode("é")[0], 0]
    assert tok.decode(tok.encode("h€")) == "h\ufffd"
    assert np.array_equal(tok.encode_array(text), np.array(ids))


def test_byte_tokenizer_round_trip():
    tok = build_tokenizer("byte", "ignored")
    assert tok.kind == "byte" and tok.vocab_size == 256
    ids = tok.encode("héllo ✓")
    assert ids == list("héllo ✓".encode("utf-8"))
    assert tok.decode(ids) == "héllo ✓"
    assert tok.decode(ids[:-1]).startswith("héllo ")  # a cut character decodes, replaced


def test_bpe_trains_round_trips_and_caches(tmp_path, monkeypatch):
    tok = build_tokenizer("bpe", SMALL_TEXT, vocab_size=300, cache_dir=tmp_path)
    assert isinstance(tok, BPETokenizer) and tok.kind == "bpe"
    assert 256 < tok.vocab_size <= 300
    assert not tok.from_cache
    assert tok.cache_path is not None and tok.cache_path.is_file()
    assert tok.cache_path.parent == tmp_path
    sample = "Whether 'tis nobler ✓ — and some unseen words: zebra, 日本語!\n\n  end"
    ids = tok.encode(sample)
    assert max(ids) < tok.vocab_size
    assert tok.decode(ids) == sample
    assert len(tok.encode(SMALL_TEXT)) < len(SMALL_TEXT.encode("utf-8"))  # merges were learnt

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer must be loaded, not retrained")

    monkeypatch.setattr(tokmod, "train_bpe", no_training)
    again = build_tokenizer("bpe", SMALL_TEXT, vocab_size=300, cache_dir=tmp_path)
    assert again.from_cache and again.cache_path == tok.cache_path
    assert again.get_vocab() == tok.get_vocab()
    assert again.encode(sample) == ids


def test_bpe_training_is_deterministic(tmp_path):
    a = tokmod.train_bpe(SMALL_TEXT, 300)
    b = tokmod.train_bpe(SMALL_TEXT, 300)
    assert a.get_vocab() == b.get_vocab()
    assert a.to_str() == b.to_str()


def test_bpe_cache_key_depends_on_text_and_vocab(tmp_path):
    a = build_tokenizer("bpe", SMALL_TEXT, vocab_size=300, cache_dir=tmp_path)
    b = build_tokenizer("bpe", SMALL_TEXT, vocab_size=280, cache_dir=tmp_path)
    c = build_tokenizer("bpe", SMALL_TEXT + "x", vocab_size=300, cache_dir=tmp_path)
    assert len({a.cache_path, b.cache_path, c.cache_path}) == 3
    assert not (b.from_cache or c.from_cache)


def test_bpe_corrupt_cache_is_retrained(tmp_path):
    tok = build_tokenizer("bpe", SMALL_TEXT, vocab_size=300, cache_dir=tmp_path)
    tok.cache_path.write_text("{ not json", encoding="utf-8")
    again = build_tokenizer("bpe", SMALL_TEXT, vocab_size=300, cache_dir=tmp_path)
    assert not again.from_cache and again.get_vocab() == tok.get_vocab()


def test_bpe_default_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "cache"))
    tok = build_tokenizer("bpe", SMALL_TEXT, vocab_size=280)
    assert tok.cache_path.parent == tmp_path / "cache" / "tokenizers"


def test_bpe_long_text_encodes_in_pieces_like_whole(tmp_path, monkeypatch):
    tok = build_tokenizer("bpe", SMALL_TEXT, vocab_size=300, cache_dir=tmp_path)
    long_text = ("line\n  indented\n\n\nword  \nnext\t\n" + SMALL_TEXT) * 60  # > 64k characters
    assert len(long_text) > tokmod._CHUNK_CHARS
    whole = tok.hf.encode(long_text).ids
    monkeypatch.setattr(tokmod, "_IDS_CACHE_MIN_CHARS", 1000)
    assert tok.encode(long_text) == whole
    cached = list(tmp_path.glob("*.ids-*.npy"))
    assert len(cached) == 1
    assert tok.encode(long_text) == whole  # now read from the ids cache


def test_error_bpe_vocab_too_small(tmp_path):
    with pytest.raises(ActlabError) as e:
        build_tokenizer("bpe", SMALL_TEXT, vocab_size=100, cache_dir=tmp_path)
    one_line_error(e, "vocab_size")


def test_error_unknown_tokenizer_kind():
    with pytest.raises(ActlabError) as e:
        build_tokenizer("wordpiece", "text")
    one_line_error(e, "wordpiece", "char", "byte", "bpe")


# ---------------------------------------------------------------- splits and batches

def test_split_ids_deterministic_and_disjoint():
    ids = torch.arange(1000)
    train, val = split_ids(ids, 0.1)
    train2, val2 = split_ids(ids, 0.1)
    assert torch.equal(train, train2) and torch.equal(val, val2)
    assert len(train) == 900 and len(val) == 100
    assert torch.equal(torch.cat([train, val]), ids)
    assert not set(train.tolist()) & set(val.tolist())
    assert train.dtype == torch.int64


def test_batcher_is_seeded_and_shifted():
    ids = torch.arange(5000)
    torch.manual_seed(1)
    a = Batcher(ids, block_size=16, batch_size=4, seed=7)
    torch.manual_seed(2)  # the global RNG must not matter
    b = Batcher(ids, block_size=16, batch_size=4, seed=7)
    c = Batcher(ids, block_size=16, batch_size=4, seed=8)
    batches_a = [a.next() for _ in range(3)]
    torch.rand(10)
    batches_b = [b.next() for _ in range(3)]
    batches_c = [c.next() for _ in range(3)]
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(batches_a, batches_c))
    x, y = batches_a[0]
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # ids are consecutive integers: y is x shifted by one
    assert int(x.max()) < 5000 and int(y.max()) < 5000


def test_batcher_reaches_the_last_token_and_resumes():
    ids = torch.arange(18)  # block 16: offsets 0 and 1 only
    batcher = Batcher(ids, block_size=16, batch_size=64, seed=0)
    x, y = batcher.next()
    assert set(x[:, 0].tolist()) == {0, 1} and int(y.max()) == 17
    state = batcher.state_dict()
    nxt = batcher.next()
    other = Batcher(ids, block_size=16, batch_size=64, seed=0)
    other.load_state_dict(state)
    assert torch.equal(other.next()[0], nxt[0])


def test_eval_batches_fixed_and_spanning():
    ids = torch.arange(10_000)
    a = eval_batches(ids, block_size=32, batch_size=8, n_batches=5)
    b = eval_batches(ids, block_size=32, batch_size=8, n_batches=5)
    assert len(a) == 5
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (8, 32) and torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya, xa + 1)
    starts = torch.cat([x[:, 0] for x, _ in a])
    assert int(starts[0]) == 0 and int(a[-1][1][-1, -1]) == 9999
    assert bool((starts[1:] > starts[:-1]).all())  # evenly spaced, distinct, in order


def test_error_text_shorter_than_one_context(tmp_path):
    with pytest.raises(ActlabError) as e:
        check_length(torch.arange(10), block_size=10)
    one_line_error(e, "shorter than one context", "10 tokens < block_size+1")
    check_length(torch.arange(11), block_size=10)  # exactly one context: fine
    with pytest.raises(ActlabError):
        Batcher(torch.arange(5), block_size=8, batch_size=2, seed=0)
    p = tmp_path / "short.txt"
    p.write_text("a short text", encoding="utf-8")
    with pytest.raises(ActlabError) as e:
        prepare(p, "char", block_size=64, cache_dir=tmp_path)
    one_line_error(e, str(p), "shorter than one context")


# ---------------------------------------------------------------- prepare

def test_prepare_splits_text_and_trains_on_train_only(tmp_path):
    p = tmp_path / "story.txt"
    p.write_text("abc " * 900 + "xyz€ " * 20, encoding="utf-8")  # the tail is validation
    data = prepare(p, "char", block_size=8, val_fraction=0.1, cache_dir=tmp_path)
    assert isinstance(data, DataBundle)
    assert data.name == "story.txt" and data.text_hash == corpus_hash(p.read_text(encoding="utf-8"))
    assert data.vocab_size == data.tokenizer.vocab_size == 5  # unknown + 'a', 'b', 'c', ' '
    assert data.train_ids.dtype == data.val_ids.dtype == torch.int64
    assert len(data.train_ids) + len(data.val_ids) == 4 * 900 + 5 * 20
    assert 0 in data.val_ids.tolist()  # x, y, z, € never seen in training text

    bpe = prepare(p, "bpe", block_size=8, vocab_size=270, cache_dir=tmp_path)
    assert bpe.tokenizer.kind == "bpe" and bpe.vocab_size <= 270


def test_prepare_bundled_char():
    data = prepare(None, "char", block_size=256)
    assert data.name == "shakespeare" and data.text_hash == BUNDLED_SHA256
    total = len(data.train_ids) + len(data.val_ids)
    assert abs(len(data.val_ids) / total - 0.1) < 0.01
    assert data.tokenizer.decode(data.train_ids[:9]) == "A Midsumm"


def test_prepare_unknown_kind():
    with pytest.raises(ActlabError) as e:
        prepare(None, "words", block_size=8)
    one_line_error(e, "words", "valid kinds")
