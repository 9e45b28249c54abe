"""The production caption tokenizer: fixed-length padding, lowercasing, long and empty captions,
save/load, determinism, BPE dropout, and agreement with the from-scratch BPE."""
import json
import warnings
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from dalle_lessons import shapes
from dalle_lessons.bpe import BPE, show
from dalle_lessons.config import get_preset
from dalle_lessons.tokenizer import (PAD, CaptionTokenizer, default_path, normalize_caption,
                                     train_default)

HAND_MADE = [
    "a large red circle at the top left", "top-left: a big crimson circle",
    "a small blue square to the left of a yellow triangle", "there is a tiny green diamond",
]
LONG = "a small blue square to the left of a yellow triangle " * 3  # about 36 tokens


@pytest.fixture(scope="module")
def captions() -> list[str]:
    return shapes.caption_corpus(200) + HAND_MADE


@pytest.fixture(scope="module")
def tok(captions) -> CaptionTokenizer:
    return CaptionTokenizer.train(captions, vocab_size=400, text_seq_len=24)


@pytest.fixture(scope="module")
def wide(tok) -> CaptionTokenizer:
    """The same tokenizer with room for 256 tokens: nothing gets truncated."""
    return CaptionTokenizer(Tokenizer.from_str(tok.to_json()), text_seq_len=256)


# --- vocabulary and special tokens ------------------------------------------------------------------

def test_pad_is_id_zero_and_only_special_token(tok):
    assert tok.pad_id == 0 and tok.vocab()[PAD] == 0
    assert tok.vocab_size <= 400
    assert tok.text_seq_len == 24


def test_vocab_size_too_small_is_explained(captions):
    with pytest.raises(ValueError, match="vocab_size=100 is too small.*256 bytes"):
        CaptionTokenizer.train(captions, vocab_size=100)


def test_training_on_nothing_is_explained():
    with pytest.raises(ValueError, match="no captions"):
        CaptionTokenizer.train(["", "  "])


# --- encoding ---------------------------------------------------------------------------------------

def test_encode_pads_on_the_right_to_text_seq_len(tok):
    ids = tok.encode("a red circle")
    n = tok.count_tokens("a red circle")
    assert len(ids) == 24 and 0 < n < 24
    assert all(i != 0 for i in ids[:n]) and ids[n:] == [0] * (24 - n)
    assert tok.tokens("a red circle") == ["Ġa", "Ġred", "Ġcircle"]


def test_lowercased_and_whitespace_normalized(tok):
    assert tok.encode("A  RED\tCircle ") == tok.encode("a red circle")
    assert tok.decode(tok.encode("  A  RED\tCircle ")) == "a red circle"


@pytest.mark.parametrize("text", ["A Large RED circle", "  tabs\tand\nnewlines  ", "Café NAÏVE e\u0301", "ÀÉÎ 🎨 東京", ""])
def test_python_normalizer_mirrors_the_tokenizers_one(tok, text):
    assert tok._tok.normalizer.normalize_str(text) == normalize_caption(text)


def test_unseen_words_uppercase_accents_and_emoji_encode_without_unknowns(wide):
    text = "A Chartreuse DODECAHEDRON, très joli 🎨✨"
    ids = wide.encode(text)
    assert max(ids) < wide.vocab_size
    assert wide.decode(ids) == "a chartreuse dodecahedron, très joli 🎨✨"


def test_special_token_text_in_a_caption_is_just_text(tok):
    ids = tok.encode("a <pad> circle")
    n = tok.count_tokens("a <pad> circle")
    assert 0 not in ids[:n]
    assert tok.decode(ids) == "a <pad> circle"


def test_decode_drops_padding_and_accepts_tensors(tok):
    ids = tok.encode("a small blue square")
    assert tok.decode(ids) == "a small blue square"
    assert tok.decode(torch.tensor(ids)) == "a small blue square"


@pytest.mark.filterwarnings("ignore:the caption has:UserWarning")
def test_encode_batch_is_a_long_tensor_of_rows(tok, captions):
    batch = tok.encode_batch(captions[:5])
    assert batch.dtype == torch.long and batch.shape == (5, 24)
    assert [row.tolist() for row in batch] == [tok.encode(c) for c in captions[:5]]
    assert tok.encode_batch([]).shape == (0, 24)
    with pytest.raises(TypeError, match="list of captions"):
        tok.encode_batch("a red circle")


# --- too long, empty, bad arguments -----------------------------------------------------------------

def test_overflow_warns_with_count_and_limit_then_truncates(tok):
    n = tok.count_tokens(LONG)
    assert n > 24
    with pytest.warns(UserWarning, match=f"has {n} tokens but text_seq_len is 24") as record:
        ids = tok.encode(LONG)
    assert "on_overflow='error'" in str(record[0].message)
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert ids == tok._tok.encode(LONG).ids[:24]


def test_overflow_error_names_count_limit_and_fix(tok):
    n = tok.count_tokens(LONG)
    with pytest.raises(ValueError, match=f"has {n} tokens but text_seq_len is 24; shorten the caption"):
        tok.encode(LONG, on_overflow="error")


def test_batch_overflow_warns_once_and_errors_with_the_caption_index(tok):
    with pytest.warns(UserWarning, match="2 of 3 captions have more than 24 tokens") as record:
        batch = tok.encode_batch([LONG, "a red circle", LONG + "again"])
    assert len(record) == 1 and batch.shape == (3, 24)
    with pytest.raises(ValueError, match="caption 1 of the batch"):
        tok.encode_batch(["a red circle", LONG], on_overflow="error")


@pytest.mark.parametrize("mode", ["truncate", "ignore", None, "WARN"])
def test_unknown_overflow_mode_lists_valid_ones(tok, mode):
    with pytest.raises(ValueError, match="'warn', 'error'"):
        tok.encode("a red circle", on_overflow=mode)
    with pytest.raises(ValueError, match="'warn', 'error'"):
        tok.encode_batch(["a red circle"], on_overflow=mode)


def test_short_captions_do_not_warn(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok.encode("a red circle")
        tok.encode_batch(["a red circle", "a blue square"])


@pytest.mark.parametrize("empty", ["", "   ", "\n\t "])
def test_empty_caption_is_an_error_unless_allowed(tok, empty):
    with pytest.raises(ValueError, match="empty caption.*allow_empty=True"):
        tok.encode(empty)
    with pytest.raises(ValueError, match="empty caption"):
        tok.encode_batch(["a red circle", empty])
    assert tok.encode(empty, allow_empty=True) == [0] * 24
    assert tok.encode_batch([empty, "a red circle"], allow_empty=True)[0].tolist() == [0] * 24


def test_non_string_caption_is_a_type_error(tok):
    with pytest.raises(TypeError, match="must be a str"):
        tok.encode(None)


# --- dropout ----------------------------------------------------------------------------------------

def test_dropout_off_is_deterministic(wide, captions):
    assert [wide.encode(c) for c in captions[:20]] == [wide.encode(c, dropout=False) for c in captions[:20]]
    assert torch.equal(wide.encode_batch(captions[:20]), wide.encode_batch(captions[:20]))


def test_dropout_changes_the_split_but_not_the_text(tok, wide, captions):
    # tokenizers draws dropout from an unseeded RNG: only properties can be tested, except at rate 1.
    for caption in captions[:20]:
        ids = wide.encode(caption, dropout=True)
        assert wide.decode(ids) == normalize_caption(caption).strip()
        assert sum(i != 0 for i in ids) >= wide.count_tokens(caption)
    full = CaptionTokenizer(Tokenizer.from_str(tok._tok.to_str()), 64, dropout_rate=1.0)
    caption = "a red circle"
    byte_ids = [tok.vocab()[show(bytes([b]))] for b in normalize_caption(caption).encode()]
    assert full.encode(caption, dropout=True)[:len(byte_ids) + 1] == byte_ids + [0]  # every merge skipped
    assert full.encode(caption) == tok.encode(caption) + [0] * 40  # dropout stays opt-in


# --- agreement with the from-scratch BPE -----------------------------------------------------------

def test_same_merges_and_ids_as_the_from_scratch_bpe(tok, wide, captions):
    ours = BPE.train([normalize_caption(c) for c in captions], vocab_size=400, special_tokens=[PAD])
    assert ours.hf_merges() == tok.merges()
    assert ours.hf_vocab() == tok.vocab()
    for caption in captions[:50] + ["A Chartreuse DODECAHEDRON 🎨"]:
        n = wide.count_tokens(caption)
        assert ours.encode(normalize_caption(caption)) == wide.encode(caption)[:n]


# --- saving, loading, determinism -------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:the caption has:UserWarning")
def test_save_load_round_trip(tok, captions, tmp_path):
    path = tok.save(tmp_path / "sub" / "tok.json")
    assert path == tmp_path / "sub" / "tok.json"
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temp file left behind
    loaded = CaptionTokenizer.load(path)
    assert loaded.text_seq_len == 24 and loaded.vocab_size == tok.vocab_size
    assert loaded.to_json() == tok.to_json() == path.read_text(encoding="utf-8")
    for caption in captions[:20] + ["a <pad> circle"]:
        assert loaded.encode(caption) == tok.encode(caption)
    tok.save(path)  # overwriting is fine
    assert CaptionTokenizer.load(path).to_json() == tok.to_json()


@pytest.mark.filterwarnings("ignore:the caption has:UserWarning")
def test_plain_tokenizers_reads_the_file_and_pads_the_same(tok, captions, tmp_path):
    plain = Tokenizer.from_file(str(tok.save(tmp_path / "tok.json")))
    for caption in captions[:20]:
        assert plain.encode(caption).ids == tok.encode(caption)
    assert json.loads(tok.to_json())["padding"]["strategy"] == {"Fixed": 24}


def test_text_seq_len_travels_in_the_file(captions, tmp_path):
    short = CaptionTokenizer.train(captions, vocab_size=300, text_seq_len=8)
    assert CaptionTokenizer.load(short.save(tmp_path / "t.json")).text_seq_len == 8


def test_load_missing_or_foreign_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m dalle_lessons train tokenizer"):
        CaptionTokenizer.load(tmp_path / "nope.json")
    foreign = tmp_path / "foreign.json"
    Tokenizer.from_str(CaptionTokenizer.train(HAND_MADE, 300)._tok.to_str()).save(str(foreign))
    with pytest.raises(ValueError, match="no fixed padding length"):
        CaptionTokenizer.load(foreign)


def test_training_is_deterministic_byte_for_byte(tok, captions):
    again = CaptionTokenizer.train(captions, vocab_size=400, text_seq_len=24)
    shuffled = CaptionTokenizer.train(list(reversed(captions)), vocab_size=400, text_seq_len=24)
    assert again.to_json() == tok.to_json() == shuffled.to_json()


def test_train_default_writes_the_preset_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("DALLE_LESSONS_DATA", str(tmp_path))
    assert default_path() == tmp_path / "tokenizer.json"
    path = train_default("tiny", n_captions=100)
    assert path == tmp_path / "tokenizer.json"
    first = path.read_bytes()
    assert train_default("tiny", n_captions=100, path=tmp_path / "again.json").read_bytes() == first
    loaded = CaptionTokenizer.load()
    sizes = get_preset("tiny").transformer
    assert loaded.text_seq_len == sizes.text_seq_len and loaded.vocab_size <= sizes.text_vocab_size


def test_shipped_tokenizer_fits_the_cpu_preset():
    path = Path(__file__).resolve().parent.parent / "data" / "tokenizer.json"
    tok = CaptionTokenizer.load(path)
    sizes = get_preset("cpu").transformer
    assert tok.text_seq_len == sizes.text_seq_len
    assert tok.vocab_size <= sizes.text_vocab_size
    assert tok.encode("a small blue square to the left of a yellow triangle")[-1] == tok.pad_id


def test_committed_tokenizer_is_what_the_documented_command_produces(tmp_path):
    """`python -m dalle_lessons train tokenizer --preset cpu --seed 0` regenerates data/tokenizer.json."""
    from dalle_lessons.paths import data_dir
    from dalle_lessons.tokenizer import train_default

    fresh = train_default(preset="cpu", seed=0, path=tmp_path / "tokenizer.json")
    assert fresh.read_bytes() == (data_dir() / "tokenizer.json").read_bytes()
