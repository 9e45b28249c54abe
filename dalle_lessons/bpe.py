"""Byte-pair encoding (BPE) from scratch: the teaching version of the caption tokenizer.

BPE starts from the 256 byte values, so any text (unseen words, accents, emoji) can be written
with it, then learns *merges*: the most frequent adjacent pair of tokens becomes one new token,
again and again, until the vocabulary is full. Frequent words end up as a single token, rare
words as a few pieces, and nothing is ever unknown.

It follows GPT-2's byte-level recipe and numbers tokens exactly as Hugging Face `tokenizers`
does (a `BpeTrainer` with a `ByteLevel` pre-tokenizer and `initial_alphabet=ByteLevel.alphabet()`),
so the two learn the same merges and give the same ids, token for token. The production
tokenizer (`dalle_lessons.tokenizer`) is that `tokenizers` version; this one is for reading.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter, defaultdict
from itertools import groupby
from typing import Iterable, Sequence

Pair = tuple[int, int]


# ---------------------------------------------------------------------------------------------
# Bytes, and how to show them


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to one printable character, so tokens can be shown as text.

    Printable bytes stand for themselves ('a' is 'a'); the other 68 (space, newline, control
    bytes, ...) borrow the characters from chr(256) upward, in byte order: the space becomes 'Ġ'.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, borrowed = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + borrowed)
            borrowed += 1
    return mapping


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {char: byte for byte, char in BYTE_TO_CHAR.items()}


def show(token: bytes) -> str:
    """A token's bytes as GPT-2 / `tokenizers` print them: b' red' -> 'Ġred'."""
    return "".join(BYTE_TO_CHAR[b] for b in token)


# ---------------------------------------------------------------------------------------------
# Pre-tokenization: split text into words before BPE, so merges never cross a word boundary


def _category_classes() -> dict[str, str]:
    """Regex character-class bodies by major Unicode category ('L' letters, 'N' numbers, ...):
    Python's `re` has no \\p{L}, so we list the runs of code points of each category."""
    classes, start = defaultdict(str), 0
    majors = (unicodedata.category(chr(cp))[0] for cp in range(sys.maxunicode + 1))
    for major, run in groupby(majors):
        end = start + sum(1 for _ in run)
        classes[major] += f"\\U{start:08x}-\\U{end - 1:08x}"
        start = end
    return classes


# Unicode White_Space, as the regex engine of `tokenizers` reads \s (Python's \s adds \x1c-\x1f).
_S = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_CLASSES = _category_classes()
_L, _N = _CLASSES["L"], _CLASSES["N"]

# GPT-2's pattern: contractions | optional space + letters | + digits | + other symbols | spaces.
# A word keeps the space in front of it (" red"), so "red" mid-sentence is always the same token.
# It splits exactly like `tokenizers`' ByteLevel pre-tokenizer for every character Python's
# `unicodedata` knows (checked code point by code point); characters added to Unicode after that
# version count as symbols here but may be letters there.
PRETOKENIZE_PATTERN = re.compile(
    f"'s|'t|'re|'ve|'m|'ll|'d| ?[{_L}]+| ?[{_N}]+| ?[^{_S}{_L}{_N}]+|[{_S}]+(?![^{_S}])|[{_S}]+"
)


def pretokenize(text: str) -> list[str]:
    """Split text into words GPT-2 style: 'A red  circle!' -> ['A', ' red', ' ', ' circle', '!']."""
    return PRETOKENIZE_PATTERN.findall(text)


# ---------------------------------------------------------------------------------------------
# The two steps of BPE training: count adjacent pairs, merge the most frequent one


def count_pairs(words: dict[tuple[int, ...], int]) -> Counter[Pair]:
    """How often each adjacent pair of tokens occurs, given each word's tokens and its frequency."""
    counts: Counter[Pair] = Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right
    (so 'a a a' merged on (a, a) gives 'aa a')."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def most_frequent_pair(counts: dict[Pair, int]) -> Pair:
    """The pair to merge next: the highest count; among equal counts, the smallest pair of ids.

    The tie rule is the one of `tokenizers`' BpeTrainer, whose priority queue orders merges by
    count, then by ascending (left id, right id). (The queue updates counts lazily, but re-checks a
    popped pair against its true count, so it picks what recounting every step picks.) Any rule
    works; matching it makes the merge lists identical.
    """
    return min(counts, key=lambda pair: (-counts[pair], pair))


def apply_merges(ids: Sequence[int], merges: dict[Pair, int]) -> list[int]:
    """Encode one word: apply the learned merges, earliest learned first, until none applies.

    `merges` maps pair -> new id in the order the merges were learned (dicts keep that order).
    Applying them in training order reproduces the segmentation training arrived at.
    """
    rank = {pair: r for r, pair in enumerate(merges)}
    ids = list(ids)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            break  # no learned merge applies any more
        ids = merge(ids, pair, merges[pair])
    return ids


# ---------------------------------------------------------------------------------------------
# The tokenizer


def base_vocab(n_special: int = 0) -> dict[int, bytes]:
    """The 256 single-byte tokens, numbered after the special tokens.

    They are ordered by their printable character, not by byte value, because that is how
    `tokenizers` numbers its byte-level alphabet ('!' gets the first id, the space 'Ġ' comes late).
    """
    order = sorted(range(256), key=lambda byte: BYTE_TO_CHAR[byte])
    return {n_special + i: bytes([byte]) for i, byte in enumerate(order)}


class BPE:
    """A byte-level BPE tokenizer: special tokens first, then 256 bytes, then learned merges."""

    def __init__(self, merges: dict[Pair, int], vocab: dict[int, bytes],
                 special_tokens: Sequence[str] = ()):
        self.merges = dict(merges)  # (left id, right id) -> new id, in the order learned
        self.vocab = dict(vocab)  # id -> the bytes it stands for (special tokens excluded)
        self.special_tokens = list(special_tokens)  # ids 0 .. len-1, never produced by encode
        self._byte_id = {token[0]: i for i, token in vocab.items() if len(token) == 1}
        self._cache: dict[str, list[int]] = {}  # word -> ids; texts repeat their words a lot

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int,
              special_tokens: Sequence[str] = ()) -> BPE:
        """Learn merges from `texts` until the vocabulary (specials + bytes + merges) has
        `vocab_size` tokens, or no pair is left to merge."""
        vocab = base_vocab(len(special_tokens))
        id_of = {token: i for i, token in vocab.items()}
        # Words, not texts, are what BPE sees: count each distinct word once, with its frequency.
        word_freq = Counter(word for text in texts for word in pretokenize(text))
        words = {tuple(id_of[bytes([b])] for b in w.encode("utf-8")): n for w, n in word_freq.items()}
        merges: dict[Pair, int] = {}
        while len(special_tokens) + len(vocab) < vocab_size:
            counts = count_pairs(words)
            if not counts:
                break  # every word is a single token: nothing left to learn
            pair = most_frequent_pair(counts)
            token = vocab[pair[0]] + vocab[pair[1]]
            # Two different merges can spell the same bytes ('ab'+'c', 'a'+'bc'): reuse the id.
            new_id = id_of.setdefault(token, len(special_tokens) + len(vocab))
            vocab[new_id] = token
            merges[pair] = new_id
            words = {tuple(merge(word, pair, new_id)): n for word, n in words.items()}
        return cls(merges, vocab, special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.special_tokens) + len(self.vocab)

    def byte_ids(self, text: str) -> list[int]:
        """The ids of the single bytes of `text`: where encoding starts, before any merge."""
        return [self._byte_id[b] for b in text.encode("utf-8")]

    def encode_word(self, word: str) -> list[int]:
        """The ids of one pre-tokenized word (cached: a caption corpus reuses few words)."""
        if word not in self._cache:
            self._cache[word] = apply_merges(self.byte_ids(word), self.merges)
        return list(self._cache[word])

    def encode(self, text: str) -> list[int]:
        """Text -> ids. Any string works: at worst a word falls back to its bytes."""
        return [i for word in pretokenize(text) for i in self.encode_word(word)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text. Join the bytes first, then decode: a token may hold half a character."""
        data = b"".join(self.vocab[i] for i in ids if i >= len(self.special_tokens))
        return data.decode("utf-8", errors="replace")

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text` as printable strings ('Ġred' is ' red')."""
        return [self.token_str(i) for i in self.encode(text)]

    def token_str(self, token_id: int) -> str:
        """One token as `tokenizers` writes it in its vocabulary."""
        if token_id < len(self.special_tokens):
            return self.special_tokens[token_id]
        return show(self.vocab[token_id])

    def hf_vocab(self) -> dict[str, int]:
        """The vocabulary as `tokenizers` stores it: printable token string -> id."""
        return {self.token_str(i): i for i in range(self.vocab_size)}

    def hf_merges(self) -> list[tuple[str, str]]:
        """The merges, in order, as `tokenizers` stores them: ('Ġ', 'r'), ('Ġr', 'ed'), ..."""
        return [(self.token_str(a), self.token_str(b)) for a, b in self.merges]
