"""Self-checks for lesson 02 (tokenization).

Each exercise is a variation the lesson has not shown and the library does not implement: WordPiece's
merge score instead of BPE's count, longest-match encoding instead of replaying merges, and a
streaming decoder. The library's own function (or section 5's `most_frequent`) gives a different answer,
and each check names that shortcut, and the usual mistakes, in plain words.
"""
from __future__ import annotations

import codecs
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from typing import Callable

from dalle_lessons import bpe
from dalle_lessons.exercises import Feedback, call_learner, report

Pair = tuple[int, int]
Words = dict[tuple[int, ...], int]

# A tiny caption corpus (already normalized: lowercase, leading space), enough for a few dozen merges.
CORPUS = [
    " a large red circle at the top left", " a small blue square to the left of a yellow triangle",
    " there is a tiny green diamond", " a big crimson disc, placed at the bottom right",
    " a red square above a green circle", " in the middle, a small yellow cross",
    " three red trees see a tall llama", " a teal circle below a red square",
]


@lru_cache(maxsize=1)
def reference_bpe() -> bpe.BPE:
    """The library's BPE trained on CORPUS: the vocabulary the checks use."""
    return bpe.BPE.train(CORPUS, vocab_size=256 + 60)


def _byte_vocab() -> dict[int, bytes]:
    return {i: b for i, b in reference_bpe().vocab.items() if isinstance(b, bytes)}


# --- exercise 1: WordPiece's choice of merge -------------------------------------------------------

def _token_counts(words: Words) -> Counter:
    counts = Counter()
    for word, freq in words.items():
        for token in word:
            counts[token] += freq
    return counts


def _pair_counts(words: Words, weighted: bool = True) -> Counter:
    counts = Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq if weighted else 1
    return counts


def wordpiece_pair_reference(words: Words) -> Pair:
    """The pair with the highest count(a b) / (count(a) count(b)); among equal scores, the smallest pair."""
    pairs, tokens = _pair_counts(words), _token_counts(words)
    return min(pairs, key=lambda p: (-Fraction(pairs[p], tokens[p[0]] * tokens[p[1]]), p))


def _wordpiece_variants(words: Words) -> dict[str, Pair]:
    pairs, tokens = _pair_counts(words), _token_counts(words)
    unweighted_pairs = _pair_counts(words, weighted=False)
    unweighted_tokens = Counter(t for word in words for t in word)

    def best(score, smallest: bool = True) -> Pair:
        if smallest:
            return min(pairs, key=lambda p: (-score(p), p))
        return max(pairs, key=lambda p: (score(p), p))

    return {
        "most_frequent": bpe.most_frequent_pair(pairs),
        "unweighted": min(unweighted_pairs, key=lambda p: (
            -Fraction(unweighted_pairs[p], unweighted_tokens[p[0]] * unweighted_tokens[p[1]]), p)),
        "sum": best(lambda p: Fraction(pairs[p], tokens[p[0]] + tokens[p[1]])),
        "lowest": min(pairs, key=lambda p: (Fraction(pairs[p], tokens[p[0]] * tokens[p[1]]), p)),
        "largest_tie": best(lambda p: Fraction(pairs[p], tokens[p[0]] * tokens[p[1]]), smallest=False),
    }


_WORDPIECE_MISTAKES = {
    "most_frequent": "that is the most frequent pair, BPE's choice (section 5's most_frequent). WordPiece "
                     "divides the pair's count by the counts of its two parts: a pair of rare tokens that "
                     "always appear together beats a pair of common tokens that meet by chance.",
    "unweighted": "you counted each distinct word once. Weight every pair and every token by its word's "
                  "frequency, as count_pairs does.",
    "sum": "you divided by count(a) + count(b). The score is count(a b) / (count(a) × count(b)): how much "
           "more often a and b meet than if they were independent.",
    "lowest": "you returned the pair with the lowest score; WordPiece merges the highest.",
    "largest_tie": "pairs tie on the score, and you broke the tie toward the largest pair. Take the smallest "
                   "(left id, right id), as tokenizers does for BPE.",
}

_WORDPIECE_CASES: list[tuple[Words, str]] = [
    ({(1, 2, 3): 5, (1, 3): 4, (4, 5): 2}, "a rare pair that always sticks together"),
    ({(2, 5, 5): 1, (6, 3, 3): 6, (3, 2): 2, (1, 3, 1): 2}, "a frequent word with a common token"),
    ({(7, 8): 6, (7, 9, 8): 1, (9, 9): 1, (3, 4, 3): 2, (6, 4): 1}, "words of different frequencies"),
    ({(2, 5): 3, (4, 1): 3, (5, 2): 1, (1, 4): 1}, "a tie on the score"),
]


def check_wordpiece_pair(fn: Callable[[Words], Pair]) -> bool:
    """Exercise 1: `fn(words)` returns the pair WordPiece merges next: the highest count(ab)/(count(a)count(b))."""

    def check() -> None:
        for words, name in _WORDPIECE_CASES:
            given = dict(words)
            got = call_learner(fn, f"Your function (on {name})", given)
            if given != words:
                raise Feedback("your function changed the `words` dict it was given: only read it.")
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise Feedback(f"return a pair of ids like (4, 5); for {words} you returned {got!r}.")
            got = tuple(got)
            want = wordpiece_pair_reference(words)
            if got == want:
                continue
            pairs = _pair_counts(words)
            if got not in pairs:
                raise Feedback(f"for {words} you returned {got}, which is not a pair of adjacent tokens.")
            for mistake, pair in _wordpiece_variants(words).items():
                if got == pair and pair != want:
                    raise Feedback(f"On {name} ({words}): {_WORDPIECE_MISTAKES[mistake]}")
            tokens = _token_counts(words)
            raise Feedback(f"for {words} expected {want} (score {pairs[want]}/({tokens[want[0]]}×{tokens[want[1]]})), "
                           f"got {got} (score {pairs[got]}/({tokens[got[0]]}×{tokens[got[1]]})).")

    return report("Exercise 1 (WordPiece's pair)", check)


# --- exercise 2: longest-match encoding -------------------------------------------------------------

_MATCH_WORDS = [" smallest", " largely", " circle", " reddish", " a"]


def longest_match_reference(word: str, vocab: dict[int, bytes]) -> list[int]:
    """Greedy from the left: the longest vocabulary token that starts the remaining bytes, again and again."""
    ids_of = {b: i for i, b in vocab.items()}
    data, out, start = word.encode("utf-8"), [], 0
    while start < len(data):
        end = next(e for e in range(len(data), start, -1) if data[start:e] in ids_of)
        out.append(ids_of[data[start:end]])
        start = end
    return out


def _longest_suffix_first(word: str, vocab: dict[int, bytes]) -> list[int]:
    ids_of = {b: i for i, b in vocab.items()}
    data, out, end = word.encode("utf-8"), [], len(word.encode("utf-8"))
    while end > 0:
        start = next(s for s in range(0, end) if data[s:end] in ids_of)
        out.insert(0, ids_of[data[start:end]])
        end = start
    return out


def check_longest_match(fn: Callable[[str, dict[int, bytes]], list[int]]) -> bool:
    """Exercise 2: `fn(word, vocab)` encodes one word by longest match from the left (WordPiece's way)."""

    def check() -> None:
        model, vocab = reference_bpe(), _byte_vocab()
        deferred = None
        for word in _MATCH_WORDS:
            what = f"Your function (on {word!r})"
            got = call_learner(fn, what, word, dict(vocab))
            if isinstance(got, str) or (isinstance(got, list) and got and isinstance(got[0], (str, bytes))):
                raise Feedback(f"{what} returned tokens as text ({got!r}); return their ids, the keys of vocab.")
            try:
                got = [int(i) for i in got]
            except (TypeError, ValueError):
                raise Feedback(f"{what} should return a list of ids, but it returned {got!r}.") from None
            want = longest_match_reference(word, vocab)
            if got == want:
                continue
            shown = lambda ids: [model.token_str(i) if i in vocab else i for i in ids]  # noqa: E731
            named = {
                "bpe": (model.encode(word),
                        f"on {word!r} you gave BPE's tokens {shown(got)}, replaying the merges in the order they "
                        f"were learned (the library's encode). Longest match gives {shown(want)}: at each step "
                        "take the longest token in the vocabulary that starts the rest of the word. The two agree "
                        "on the words BPE was trained on, but not on new ones."),
                "bytes": (model.byte_ids(word), f"on {word!r} you returned one token per byte: take the *longest* "
                                                "token that matches, not the shortest."),
                "right": (_longest_suffix_first(word, vocab),
                          f"on {word!r} you matched from the right end of the word. Longest match starts from the "
                          f"left: {shown(want)}."),
            }
            matches = [message for ids, message in named.values() if got == ids]
            if len(matches) == 1:
                raise Feedback(matches[0])
            if matches:  # two mistakes give the same tokens on this word: a later word tells them apart
                deferred = deferred or matches[0]
                continue
            if b"".join(vocab.get(i, b"?") for i in got) != word.encode("utf-8"):
                raise Feedback(f"on {word!r} your tokens {shown(got)} do not spell the word: their bytes must "
                               "join back to the word's bytes.")
            raise Feedback(f"on {word!r} expected {shown(want)}, got {shown(got)}. From the left, take the longest "
                           "vocabulary token that the remaining bytes start with.")
        if deferred:
            raise Feedback(deferred)

    return report("Exercise 2 (longest-match encoding)", check)


# --- exercise 3: a streaming decoder ----------------------------------------------------------------

_STREAM_TEXTS = [" a red circle", " café 🎨 naïve", " über-große 東京 ✨"]


def stream_decode_reference(ids: list[int], vocab: dict[int, bytes]) -> list[str]:
    """One piece of text per id: the characters that id completes (partial characters wait)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(vocab[i]) for i in ids]


def check_stream_decode(fn: Callable[[list[int], dict[int, bytes]], list[str]]) -> bool:
    """Exercise 3: `fn(ids, vocab)` -> one str per id, the text completed by that id; "".join gives the text."""

    def check() -> None:
        model, vocab = reference_bpe(), _byte_vocab()
        cases = [(repr(text), model.encode(text)) for text in _STREAM_TEXTS]
        cases.append(("' 🎨' cut one byte short (as truncation can do)", model.encode(" 🎨")[:-1]))
        for name, ids in cases:
            what = f"Your decoder (on {name})"
            got = call_learner(fn, what, list(ids), dict(vocab))
            want = stream_decode_reference(ids, vocab)
            if isinstance(got, str):
                raise Feedback(f"{what} returned one string ({got!r}). Return a list with one piece of text per "
                               "id, as a chat window would print them while the ids arrive.")
            if not isinstance(got, (list, tuple)) or not all(isinstance(piece, str) for piece in got):
                raise Feedback(f"{what} should return a list of str, one per id; it returned {got!r}.")
            got = list(got)
            if len(got) != len(ids):
                raise Feedback(f"{what} returned {len(got)} pieces for {len(ids)} ids: return exactly one per id "
                               "(an empty string when an id completes no character yet).")
            if got == want:
                continue
            per_token = [vocab[i].decode("utf-8", errors="replace") for i in ids]
            if got == per_token:
                raise Feedback(f"on {name} you decoded each token on its own (what decode([id]) gives), so a "
                               "character split over tokens comes out as '\ufffd' pieces. Keep the bytes of an "
                               "unfinished character until the token that completes it arrives.")
            if got == ["".join(want[:k + 1]) for k in range(len(want))]:
                raise Feedback(f"on {name} each piece is the whole text so far. Return only the new text each "
                               "id adds, so that ''.join(pieces) is the text.")
            if "".join(got) == "".join(want) and got[:-1] != want[:-1]:
                where = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
                raise Feedback(f"on {name} the pieces join to the right text, but piece {where} is {got[where]!r} "
                               f"where {want[where]!r} was expected. Emit each character as soon as its last byte "
                               "has arrived, not later.")
            if "cut" in name and "".join(got).endswith("\ufffd"):
                raise Feedback("the ids end in the middle of a character, and you emitted '\ufffd' for it. A "
                               "streaming decoder cannot know the character is unfinished for good: hold its "
                               "bytes back and emit nothing for them.")
            raise Feedback(f"on {name} expected {want!r}, got {got!r}. Keep a buffer of bytes; after each id, "
                           "emit the complete characters at its front and keep the rest "
                           "(codecs.getincrementaldecoder('utf-8') does exactly that).")

    return report("Exercise 3 (streaming decoder)", check)
