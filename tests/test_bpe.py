"""Byte-level BPE from scratch: pre-tokenization, training, round trips, agreement with Hugging Face
`tokenizers` merge for merge and id for id."""
import json
import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from dalle_lessons import bpe
from dalle_lessons.bpe import BPE

MIXED = [
    "Hello World! It's DALL·E's turn: 12 circles, 3.5 squares, x², ½ and Ⅻ.",
    "Café, naïve façade — Ünïcödé ÀÉÎÕÜ ß ﬁ e\u0301 (a decomposed é)",
    "emoji 🎨🖼️ and a flag 🇫🇷, CJK 東京 and Ελληνικά, Кириллица, עִבְרִית",
    "tabs\tand\nnewlines   and  spaces \u00a0\u3000 trailing  ",
    "they're we've I'm you'll she'd IT'S",
]


def tie_heavy_corpus(seed: int = 0, n: int = 300) -> list[str]:
    """Random words over a 5-letter alphabet: many pairs are equally frequent, so ties decide merges."""
    rng = random.Random(seed)
    words = lambda: " ".join("".join(rng.choice("abcdé") for _ in range(rng.randint(1, 6))) for _ in range(8))
    return [words() for _ in range(n)] + MIXED


def hf_train(texts: list[str], vocab_size: int, special_tokens=()) -> Tokenizer:
    """Hugging Face's byte-level BPE, configured like ours: GPT-2 words, all 256 bytes, no normalizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def hf_merges(tok: Tokenizer) -> list[tuple[str, str]]:
    return [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return tie_heavy_corpus()


@pytest.fixture(scope="module")
def trained(corpus) -> BPE:
    return BPE.train(corpus, vocab_size=400, special_tokens=["<pad>"])


# --- bytes and words --------------------------------------------------------------------------------

def test_byte_alphabet_is_tokenizers_bytelevel_alphabet():
    assert len(set(bpe.BYTE_TO_CHAR.values())) == 256
    assert set(bpe.BYTE_TO_CHAR.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert bpe.BYTE_TO_CHAR[ord(" ")] == "Ġ" and bpe.BYTE_TO_CHAR[ord("a")] == "a"
    assert bpe.show(" é".encode()) == "ĠÃ©"
    assert all(bpe.CHAR_TO_BYTE[c] == b for b, c in bpe.BYTE_TO_CHAR.items())


def test_base_vocab_numbers_bytes_like_tokenizers():
    untrained = BPE({}, bpe.base_vocab(1), ["<pad>"])
    assert untrained.hf_vocab() == hf_train(["x"], 257, ["<pad>"]).get_vocab()


@pytest.mark.parametrize("text", MIXED + ["", " a red circle", "a  red   circle  "])
def test_pretokenize_matches_tokenizers_bytelevel(text):
    ours = [bpe.show(word.encode()) for word in bpe.pretokenize(text)]
    theirs = [word for word, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]
    assert ours == theirs
    assert "".join(bpe.pretokenize(text)) == text  # nothing is lost


def test_pretokenize_keeps_the_leading_space():
    assert bpe.pretokenize("A red  circle!") == ["A", " red", " ", " circle", "!"]


# --- the training steps -----------------------------------------------------------------------------

def test_count_pairs_weights_by_word_frequency():
    counts = bpe.count_pairs({(1, 2, 3): 2, (2, 3): 5, (7, 7, 7): 1})
    assert counts == {(1, 2): 2, (2, 3): 7, (7, 7): 2}


def test_merge_replaces_every_occurrence_left_to_right():
    assert bpe.merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert bpe.merge([5, 5, 5], (5, 5), 9) == [9, 5]  # overlapping: the left pair wins
    assert bpe.merge([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert bpe.merge([1], (1, 2), 9) == [1] and bpe.merge([], (1, 2), 9) == []


def test_most_frequent_pair_breaks_ties_by_smallest_ids():
    assert bpe.most_frequent_pair({(9, 9): 3, (1, 2): 5}) == (1, 2)
    assert bpe.most_frequent_pair({(5, 1): 4, (3, 9): 4, (3, 2): 4}) == (3, 2)


def test_apply_merges_uses_training_order():
    merges = {(1, 2): 10, (2, 3): 11, (10, 3): 12}  # (1, 2) was learned first
    assert bpe.apply_merges([1, 2, 3], merges) == [12]
    assert bpe.apply_merges([4, 2, 3], merges) == [4, 11]
    assert bpe.apply_merges([], merges) == [] and bpe.apply_merges([1], merges) == [1]


# --- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", MIXED + ["", "UPPER lower MiXeD", "never seen: xylophone quixotic 🦄"])
def test_round_trip_on_any_text(trained, text):
    ids = trained.encode(text)
    assert all(0 < i < trained.vocab_size for i in ids)  # never the special token, never out of range
    assert trained.decode(ids) == text
    assert BPE({}, bpe.base_vocab()).decode(BPE({}, bpe.base_vocab()).encode(text)) == text  # bytes only


def test_merges_compress(trained, corpus):
    text = corpus[0]
    assert len(trained.encode(text)) < len(text.encode("utf-8")) / 2


def test_decode_skips_special_tokens_and_survives_cut_characters(trained):
    ids = trained.encode(" 🎨")
    assert trained.decode([0, *ids, 0]) == " 🎨"
    assert trained.decode(ids[:-1]).endswith("\ufffd")


# --- agreement with Hugging Face tokenizers ---------------------------------------------------------

@pytest.mark.parametrize("vocab_size, special_tokens", [(300, ()), (400, ("<pad>",)), (600, ("<pad>", "<eos>"))])
def test_same_merges_vocab_and_ids_as_tokenizers(corpus, vocab_size, special_tokens):
    ours = BPE.train(corpus, vocab_size, special_tokens)
    theirs = hf_train(corpus, vocab_size, special_tokens)
    assert ours.vocab_size == theirs.get_vocab_size() == vocab_size
    assert ours.hf_merges() == hf_merges(theirs)
    assert ours.hf_vocab() == theirs.get_vocab()
    for text in corpus[:50] + MIXED + ["unseen Wörds ✨ here", "aaaaaaa ééééé"]:
        assert ours.encode(text) == theirs.encode(text).ids
        assert ours.tokens(text) == theirs.encode(text).tokens


def count_ties(texts: list[str], model: BPE) -> int:
    """Replay training: how many merges were chosen among several equally frequent pairs."""
    byte_id = {token[0]: i for i, token in model.vocab.items() if len(token) == 1}
    words = {}
    for text in texts:
        for w in bpe.pretokenize(text):
            key = tuple(byte_id[b] for b in w.encode())
            words[key] = words.get(key, 0) + 1
    ties = 0
    for pair, new_id in model.merges.items():
        counts = bpe.count_pairs(words)
        top = max(counts.values())
        ties += sum(c == top for c in counts.values()) > 1
        words = {tuple(bpe.merge(w, pair, new_id)): n for w, n in words.items()}
    return ties


def test_tie_breaking_is_what_makes_the_merges_identical(corpus, monkeypatch):
    ours = BPE.train(corpus, 400)
    assert count_ties(corpus, ours) > 20  # this corpus really exercises the tie rule
    theirs = hf_merges(hf_train(corpus, 400))
    # Any other tie rule (here: the largest pair wins) learns a different merge list.
    monkeypatch.setattr(bpe, "most_frequent_pair", lambda counts: max(counts, key=lambda p: (counts[p], p)))
    other = BPE.train(corpus, 400).hf_merges()
    assert other != theirs
    first_difference = next(i for i, (a, b) in enumerate(zip(other, theirs)) if a != b)
    assert first_difference < 50


def test_training_is_deterministic_and_ignores_corpus_order(corpus):
    a = BPE.train(corpus, 350)
    b = BPE.train(list(reversed(corpus)), 350)
    assert a.merges == b.merges and a.vocab == b.vocab


def test_training_stops_when_every_word_is_one_token():
    model = BPE.train(["ab ab abc"], vocab_size=1000)
    assert model.vocab_size < 1000
    assert model.tokens("ab ab abc") == ["ab", "Ġab", "Ġabc"]


# Lesson 02's exercise checks are tested in tests/test_exercises_l02.py.
