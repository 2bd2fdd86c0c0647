"""Tokenizer files: a run folder's tokenizer.json / vocab.json round trips, and a user's
Hugging Face tokenizer.json accepted as --tokenizer (config, prepare)."""

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from actlab.config import TrainConfig
from actlab.data import prepare
from actlab.data.tokenizer import (
    _CHUNK_CHARS, BPETokenizer, ByteTokenizer, CharTokenizer, FileTokenizer, build_tokenizer,
)
from actlab.data.tokenizer_files import (
    check_tokenizer, load_tokenizer, load_tokenizer_file, save_tokenizer,
)
from actlab.errors import ActlabError

# A few KB of text: BPE training needs enough pairs to learn ~40 merges past the 256 bytes.
TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York;\n"
        "And all the clouds that lour'd upon our house in the deep bosom of the ocean buried.\n") * 30
UNSEEN = "Zoë's café — naïve 東京 🙂\tZ\r\nQ"  # characters the training text never had


def one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ActlabError) and msg and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def same_behaviour(a, b):
    for text in (TEXT[:500], UNSEEN, "", "\n"):
        assert a.encode(text) == b.encode(text)
        assert a.decode(a.encode(text)) == b.decode(b.encode(text))
    ids = list(range(a.vocab_size))
    assert a.decode(ids) == b.decode(ids)
    assert a.vocab_size == b.vocab_size and a.kind == b.kind


def user_tokenizer(path, text=TEXT):
    """A tokenizer.json unlike actlab's BPE: a prefix space, a special token, a post-processor."""
    from tokenizers import processors

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=290, special_tokens=["<|end|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A <|end|>",
                                                       special_tokens=[("<|end|>", 0)])
    tok.save(str(path))
    return tok


def test_char_round_trip_through_vocab_json(tmp_path):
    tok = build_tokenizer("char", TEXT)
    path = save_tokenizer(tok, tmp_path)
    assert path == tmp_path / "vocab.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw == {"schema_version": 1, "kind": "char", "chars": sorted(set(TEXT))}
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer)
    same_behaviour(tok, again)
    assert again.encode("Zow") == [0, tok.chars.index("o") + 1, tok.chars.index("w") + 1]


def test_byte_round_trip_through_vocab_json(tmp_path):
    save_tokenizer(ByteTokenizer(), tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == {"schema_version": 1, "kind": "byte"}
    again = load_tokenizer(tmp_path, "byte")
    same_behaviour(ByteTokenizer(), again)
    assert again.encode("é") == [0xC3, 0xA9] and again.decode([0xC3]) == "\ufffd"


def test_bpe_round_trip_through_hugging_face_tokenizer_json(tmp_path):
    tok = build_tokenizer("bpe", TEXT, vocab_size=300, cache_dir=tmp_path / "cache")
    assert 256 < tok.vocab_size <= 300
    (tmp_path / "run").mkdir()
    save_tokenizer(tok, tmp_path / "run")
    hf = HFTokenizer.from_file(str(tmp_path / "run" / "tokenizer.json"))  # Hugging Face's own format
    assert hf.get_vocab() == tok.get_vocab()
    again = load_tokenizer(tmp_path / "run")
    assert type(again) is BPETokenizer and again.kind == "bpe"  # recognised as actlab's recipe
    same_behaviour(tok, again)
    assert len(tok.encode("the winter of our")) < len("the winter of our")  # merges are used


def test_a_new_tokenizer_removes_the_old_file(tmp_path):
    save_tokenizer(build_tokenizer("char", TEXT), tmp_path)
    save_tokenizer(build_tokenizer("bpe", TEXT, vocab_size=300, cache_dir=tmp_path / "c"), tmp_path)
    assert not (tmp_path / "vocab.json").exists() and (tmp_path / "tokenizer.json").is_file()
    save_tokenizer(ByteTokenizer(), tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()
    assert load_tokenizer(tmp_path).kind == "byte"


@pytest.mark.parametrize("body, needle", [
    ({"schema_version": 2, "kind": "byte"}, "schema_version 1"),
    ({"schema_version": 1, "kind": "word"}, "kind 'char'"),
    ({"schema_version": 1, "kind": "char", "chars": ["b", "a"]}, "code-point order"),
    ({"schema_version": 1, "kind": "char", "chars": ["a", "a"]}, "distinct"),
    ({"schema_version": 1, "kind": "char", "chars": ["ab"]}, "single characters"),
])
def test_a_damaged_vocab_json_is_one_line(tmp_path, body, needle):
    (tmp_path / "vocab.json").write_text(json.dumps(body))
    with pytest.raises(ActlabError) as e:
        load_tokenizer(tmp_path)
    one_line(e, "vocab.json", needle)


def test_missing_both_or_wrong_kind_is_one_line(tmp_path):
    with pytest.raises(ActlabError) as e:
        load_tokenizer(tmp_path)
    one_line(e, "no tokenizer file")
    save_tokenizer(ByteTokenizer(), tmp_path)
    with pytest.raises(ActlabError) as e:
        load_tokenizer(tmp_path, "char")
    one_line(e, "byte tokenizer", "char")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ActlabError) as e:
        load_tokenizer(tmp_path)
    one_line(e, "both")


def test_check_tokenizer_accepts_kinds_and_files_only(tmp_path):
    for kind in ("char", "byte", "bpe"):
        check_tokenizer(kind)
    good = tmp_path / "tokenizer.json"
    user_tokenizer(good)
    check_tokenizer(str(good))
    assert TrainConfig(tokenizer=str(good)).tokenizer == str(good)
    (tmp_path / "bad.json").write_text('{"model": 3}')
    (tmp_path / "folder").mkdir()
    cases = [(str(tmp_path / "missing.json"), "no such file"), (str(tmp_path / "bad.json"), "cannot be read"),
             (str(tmp_path / "folder"), "not a file"), ("wordpiece", "valid kinds: char, byte, bpe")]
    for value, needle in cases:
        with pytest.raises(ActlabError) as e:
            TrainConfig(tokenizer=value)
        one_line(e, "tokenizer", needle)


def test_a_user_tokenizer_file_is_used_as_it_is(tmp_path):
    path = tmp_path / "tokenizer.json"
    hf = user_tokenizer(path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    data = prepare(str(corpus), str(path), block_size=8)
    tok = data.tokenizer
    assert isinstance(tok, FileTokenizer) and tok.kind == "file" and tok.source == path
    assert data.vocab_size == hf.get_vocab_size() == 290
    cut = int(len(TEXT) * 0.9)
    # no special token appended: a training stream is one text, not sentences
    assert data.train_ids.tolist() == hf.encode(TEXT[:cut], add_special_tokens=False).ids
    assert hf.encode("a").ids[-1] == hf.token_to_id("<|end|>")
    assert tok.decode(data.val_ids) == hf.decode(data.val_ids.tolist(), skip_special_tokens=False)
    (tmp_path / "run").mkdir()
    save_tokenizer(tok, tmp_path / "run")
    again = load_tokenizer(tmp_path / "run")
    assert again.kind == "file"  # a special token and a prefix space: not actlab's BPE
    same_behaviour(tok, again)


def test_a_long_text_gives_the_whole_texts_ids_whatever_the_tokenizer(tmp_path):
    path = tmp_path / "tokenizer.json"
    hf = user_tokenizer(path)  # prefix space: cutting the text would add a space per piece
    long_text = (TEXT + "  indented line\n") * (_CHUNK_CHARS // len(TEXT) + 2)
    assert len(long_text) > _CHUNK_CHARS
    tok = load_tokenizer_file(path)
    assert not tok._cuttable
    assert tok.encode(long_text) == hf.encode(long_text, add_special_tokens=False).ids


def test_a_file_tokenizers_ids_are_cached_by_its_content_not_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    user_tokenizer(a)
    b.write_bytes(a.read_bytes())
    other = tmp_path / "c.json"
    user_tokenizer(other, text=TEXT.upper())
    path = lambda p: load_tokenizer_file(p)._ids_path("some text")  # noqa: E731
    assert path(a) == path(b) and path(a) != path(other)
    assert path(a).parent == tmp_path / "cache" / "tokenizers"
    assert path(a) != load_tokenizer_file(a)._ids_path("other text")
