"""Self-checks for lesson 02 (tokenization).

Each check calls the learner's function on small inputs, compares it with `dalle_lessons.bpe`
and, when it differs, tries the usual mistakes so that the feedback can name the one that was made.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

from dalle_lessons import bpe
from dalle_lessons.exercises import Feedback, report

Pair = tuple[int, int]

# A tiny caption corpus (already normalized: lowercase, leading space), enough for a few dozen merges.
CORPUS = [
    " a large red circle at the top left", " a small blue square to the left of a yellow triangle",
    " there is a tiny green diamond", " a big crimson disc, placed at the bottom right",
    " a red square above a green circle", " in the middle, a small yellow cross",
    " three red trees see a tall llama", " a teal circle below a red square",
]


@lru_cache(maxsize=1)
def reference_bpe() -> bpe.BPE:
    """The library's BPE trained on CORPUS: the answers the checks compare against."""
    return bpe.BPE.train(CORPUS, vocab_size=256 + 60)


def _call(fn: Callable, *args, what: str):
    """Run the learner's function; turn a crash into feedback instead of a failing cell."""
    try:
        return fn(*args)
    except (NotImplementedError, Feedback):
        raise
    except Exception as error:  # noqa: BLE001 - any crash is the learner's to fix, so report it
        raise Feedback(f"{what} raised {type(error).__name__}: {error}") from None


def _show_ids(ids) -> list[str]:
    model = reference_bpe()
    try:
        return [model.token_str(i) for i in ids]
    except (KeyError, TypeError, IndexError):
        return list(ids)


# --- exercise 1: which pair to merge ----------------------------------------------------------------

_PAIR_CASES: list[tuple[dict[Pair, int], str]] = [
    ({(7, 3): 2, (4, 5): 9, (1, 1): 4}, "no tie"),
    ({(3, 4): 7, (5, 9): 7, (3, 2): 7, (1, 8): 2}, "a three-way tie"),
    ({(2, 9): 5, (3, 1): 5, (4, 7): 5, (0, 0): 1}, "a tie decided by the left id"),
    ({(260, 40): 3}, "a single pair"),
]


def check_most_frequent_pair(fn: Callable[[dict[Pair, int]], Pair]) -> bool:
    """Exercise 1: `fn(counts)` returns the pair BPE merges next, breaking ties like `tokenizers`."""

    def check() -> None:
        for counts, name in _PAIR_CASES:
            given = dict(counts)
            got = _call(fn, given, what=f"your function (on {name})")
            if given != counts:
                raise Feedback("your function changed the `counts` dict it was given: only read it.")
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise Feedback(f"return a pair of ids like (4, 5); for {counts} you returned {got!r}.")
            got = tuple(got)
            want = bpe.most_frequent_pair(counts)
            if got == want:
                continue
            top = max(counts.values())
            tied = [p for p in counts if counts[p] == top]
            if got not in counts:
                raise Feedback(f"for {counts} you returned {got}, which is not one of the pairs.")
            if counts[got] != top:
                raise Feedback(f"for {counts} you returned {got}, seen {counts[got]} times, but the most "
                               f"frequent pair is seen {top} times. BPE merges the most frequent pair.")
            if got == tied[0]:
                raise Feedback(f"{len(tied)} pairs tie with count {top}: {tied}. You returned the first one "
                               "in the dict, which depends on the order pairs were counted. tokenizers "
                               f"returns the smallest pair of ids instead: {want}.")
            if got == max(tied):
                raise Feedback(f"{len(tied)} pairs tie with count {top}: {tied}. You broke the tie toward the "
                               f"largest pair; tokenizers takes the smallest: {want}.")
            if got == min(tied, key=lambda p: (p[1], p[0])):
                raise Feedback(f"among the tied pairs {tied} you compared the right ids first. Compare the "
                               f"left id first, then the right one (as tuples compare): {want}.")
            raise Feedback(f"for {counts} expected {want}, got {got}. Highest count first; among equal "
                           "counts, the smallest (left id, right id).")

    return report("Exercise 1 (most frequent pair)", check)


# --- exercise 2: encode a word with learned merges --------------------------------------------------

_WORDS = [" circle", " red", " triangle", " chartreuse", " yellowish", " reddish", " llama", " treeeeee",
          " allele", " a", "!", " 🎨"]


def _first_only(ids: list[int], merges: dict[Pair, int]) -> list[int]:
    """A common mistake: each merge replaces only the first occurrence of its pair."""
    rank = {pair: r for r, pair in enumerate(merges)}
    ids, used = list(ids), set()
    while True:
        pairs = [p for p in zip(ids, ids[1:]) if p in rank and p not in used]
        if not pairs:
            return ids
        pair = min(pairs, key=rank.get)
        used.add(pair)
        i = list(zip(ids, ids[1:])).index(pair)
        ids[i:i + 2] = [merges[pair]]


def _leftmost(ids: list[int], merges: dict[Pair, int]) -> list[int]:
    """A common mistake: merge the leftmost mergeable pair, whatever its rank."""
    ids = list(ids)
    while True:
        for i, pair in enumerate(zip(ids, ids[1:])):
            if pair in merges:
                ids[i:i + 2] = [merges[pair]]
                break
        else:
            return ids


def _latest_first(ids: list[int], merges: dict[Pair, int]) -> list[int]:
    """A common mistake: apply the most recently learned merge first."""
    return bpe.apply_merges(ids, dict(reversed(list(merges.items()))))


def _single_pass(ids: list[int], merges: dict[Pair, int]) -> list[int]:
    """A common mistake: stop after the first merge that applies."""
    rank = {pair: r for r, pair in enumerate(merges)}
    pairs = [p for p in zip(ids, ids[1:]) if p in rank]
    return bpe.merge(ids, min(pairs, key=rank.get), merges[min(pairs, key=rank.get)]) if pairs else list(ids)


_ENCODE_MISTAKES = [
    (lambda ids, merges: list(ids), "no merge was applied. Look up each adjacent pair of the word in "
                                    "`merges` and merge the one learned earliest, again and again."),
    (_single_pass, "you applied one merge and stopped. Keep going: after each merge, look again for the "
                   "earliest-learned pair in the word, until no pair of the word is in `merges`."),
    (_first_only, "you merged only the first occurrence of a pair. When a merge applies, replace every "
                  "occurrence in the word, left to right (as `merge` does)."),
    (_leftmost, "you merged the leftmost pair that has a merge. Order matters: always apply the merge "
                "learned earliest (lowest rank) among the pairs present, wherever it is in the word."),
    (_latest_first, "you applied the most recently learned merges first. Training learned them in order, "
                    "so encoding must apply the earliest-learned merge first."),
]


def check_apply_merges(fn: Callable[[list[int], dict[Pair, int]], list[int]]) -> bool:
    """Exercise 2: `fn(ids, merges)` encodes one word the way training would have segmented it."""

    def check() -> None:
        model = reference_bpe()
        wrong = []  # (word, ids, what the learner gave, what is right)
        for word in _WORDS:
            ids = model.byte_ids(word)
            given, merges = list(ids), dict(model.merges)
            got = _call(fn, given, merges, what=f"your function (on the word {word!r})")
            if given != ids or merges != model.merges:
                raise Feedback("your function changed its inputs (the ids list or the merges dict): "
                               "build a new list instead, e.g. with `merge`, which returns one.")
            if got is None or not hasattr(got, "__len__"):
                raise Feedback(f"return the list of ids; for {word!r} your function returned {got!r}.")
            got, want = [int(i) for i in got], bpe.apply_merges(ids, model.merges)
            if got != want:
                wrong.append((word, ids, got, want))
        if not wrong:
            return
        word, ids, got, want = wrong[0]
        example = f"for {word!r} you gave {_show_ids(got)} instead of {_show_ids(want)}"
        for mistake, message in _ENCODE_MISTAKES:  # name the mistake that explains every wrong word
            if all(got == mistake(ids, model.merges) for _, ids, got, _ in wrong):
                raise Feedback(f"{example}: {message}")
        raise Feedback(f"{example}. Repeat: among the adjacent pairs of the word, find the one learned "
                       "earliest; merge it everywhere; stop when no pair is in `merges`.")

    return report("Exercise 2 (apply merges)", check)


# --- exercise 3: decode ids to text -----------------------------------------------------------------

_DECODE_TEXTS = [" a red circle", " café 🎨 naïve", " über-große 東京 ✨"]


def check_decode(fn: Callable[[list[int], dict[int, bytes]], str]) -> bool:
    """Exercise 3: `fn(ids, vocab)` turns token ids back into text, even ids cut mid-character."""

    def check() -> None:
        model = reference_bpe()
        cases = [(text, model.encode(text)) for text in _DECODE_TEXTS]
        emoji = model.encode(" 🎨")
        cases.append(("' 🎨' cut one byte short (as truncation can do)", emoji[:-1]))
        for name, ids in cases:
            vocab = dict(model.vocab)
            want = model.decode(ids)
            try:
                got = fn(list(ids), vocab)
            except (NotImplementedError, Feedback):
                raise
            except UnicodeDecodeError:
                if "cut" in name:
                    raise Feedback("the ids end in the middle of a character (truncation to text_seq_len "
                                   "can do that), and decoding raised UnicodeDecodeError. Decode with "
                                   "errors='replace' so a broken character becomes '\ufffd'.") from None
                raise Feedback(f"decoding {name!r} raised UnicodeDecodeError. A token can hold part of a "
                               "character (the emoji is 4 bytes, spread over several tokens): join the bytes "
                               "of all tokens first, then decode once.") from None
            except Exception as error:  # noqa: BLE001
                raise Feedback(f"decoding {name!r} raised {type(error).__name__}: {error}") from None
            if isinstance(got, (bytes, bytearray)):
                raise Feedback("you returned bytes; return a str: call .decode('utf-8', errors='replace') "
                               "on the joined bytes.")
            if got == want:
                continue
            data = b"".join(vocab[i] for i in ids)
            if got == "".join(vocab[i].decode("utf-8", errors="replace") for i in ids):
                raise Feedback(f"for {name!r} you decoded each token on its own, which breaks characters "
                               "split across tokens (you got "
                               f"{got!r}). Join all the bytes first, then decode once.")
            if got == data.decode("latin-1"):
                raise Feedback(f"for {name!r} you decoded as latin-1 ({got!r}); the bytes are UTF-8.")
            if got == "".join(bpe.show(vocab[i]) for i in ids):
                raise Feedback(f"you joined the printable stand-ins ('Ġ' for a space): {got!r}. Join the "
                               "tokens' bytes from `vocab` and decode those.")
            raise Feedback(f"for {name!r} expected {want!r}, got {got!r}. Join vocab[i] for every id, then "
                           "decode the bytes as UTF-8 with errors='replace'.")

    return report("Exercise 3 (decode)", check)
