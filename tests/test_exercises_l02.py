"""Lesson 02's self-checks: right answers pass, wrong answers and shortcuts fail with a useful message."""
import codecs
from collections import Counter

import pytest

from dalle_lessons import bpe
from dalle_lessons.exercises.l02_tokenization import (check_longest_match, check_stream_decode,
                                                      check_wordpiece_pair, reference_bpe)
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: WordPiece's pair -----------------------------------------------------------------

def _counts(words, weighted=True):
    pairs, tokens = Counter(), Counter()
    for word, freq in words.items():
        w = freq if weighted else 1
        for token in word:
            tokens[token] += w
        for pair in zip(word, word[1:]):
            pairs[pair] += w
    return pairs, tokens


def wordpiece_pair(words):
    pairs, tokens = _counts(words)
    return min(pairs, key=lambda p: (-pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))


def wordpiece_pair_sorted(words):
    pairs, tokens = _counts(words)
    scored = sorted(((pairs[p] / tokens[p[0]] / tokens[p[1]], p) for p in pairs), key=lambda t: (-t[0], t[1]))
    return scored[0][1]


@pytest.mark.parametrize("right", [wordpiece_pair, wordpiece_pair_sorted])
def test_wordpiece_right_answers(capsys, right):
    assert_passes(check_wordpiece_pair, right, capsys)


def test_wordpiece_not_attempted(capsys):
    assert_fails(check_wordpiece_pair, not_attempted, capsys, "not attempted")


def _unweighted(words):
    pairs, tokens = _counts(words, weighted=False)
    return min(pairs, key=lambda p: (-pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))


def _sum(words):
    pairs, tokens = _counts(words)
    return min(pairs, key=lambda p: (-pairs[p] / (tokens[p[0]] + tokens[p[1]]), p))


def _lowest(words):
    pairs, tokens = _counts(words)
    return min(pairs, key=lambda p: (pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))


def _largest_tie(words):
    pairs, tokens = _counts(words)
    return max(pairs, key=lambda p: (pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))


def _mutates(words):
    answer = wordpiece_pair(words)
    words.clear()
    return answer


@pytest.mark.parametrize("wrong, phrase", [
    (_unweighted, "counted each distinct word once"),
    (_sum, "divided by count(a) + count(b)"),
    (_lowest, "the lowest score"),
    (_largest_tie, "toward the largest pair"),
    (_mutates, "changed the `words` dict"),
    (lambda words: wordpiece_pair(words)[0], "return a pair of ids"),
    (lambda words: (99, 99), "not a pair of adjacent tokens"),
    (lambda words: max(_counts(words)[0], key=lambda p: (p[1], p[0])), "expected"),
])
def test_wordpiece_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_wordpiece_pair, wrong, capsys, phrase)


def test_wordpiece_rejects_bpes_most_frequent_pair(capsys):
    """The library's most_frequent_pair, and section 5's most_frequent, are BPE's rule."""
    assert_fails(check_wordpiece_pair, lambda words: bpe.most_frequent_pair(bpe.count_pairs(words)), capsys,
                 "the most frequent pair, BPE's choice")
    most_frequent = lambda counts: min(counts, key=lambda pair: (-counts[pair], pair))  # noqa: E731
    assert_fails(check_wordpiece_pair, lambda words: most_frequent(_counts(words)[0]), capsys, "BPE's choice")


# --- exercise 2: longest-match encoding -----------------------------------------------------------

def longest_match(word, vocab):
    ids_of = {b: i for i, b in vocab.items()}
    data, out = word.encode("utf-8"), []
    while data:
        for end in range(len(data), 0, -1):
            if data[:end] in ids_of:
                out.append(ids_of[data[:end]])
                data = data[end:]
                break
    return out


def longest_match_by_length(word, vocab):
    by_length = sorted(vocab.items(), key=lambda item: -len(item[1]))
    data, out = word.encode("utf-8"), []
    while data:
        token_id, token = next((i, b) for i, b in by_length if data.startswith(b))
        out.append(token_id)
        data = data[len(token):]
    return out


@pytest.mark.parametrize("right", [longest_match, longest_match_by_length])
def test_longest_match_right_answers(capsys, right):
    assert_passes(check_longest_match, right, capsys)


def test_longest_match_not_attempted(capsys):
    assert_fails(check_longest_match, not_attempted, capsys, "not attempted")


def _from_the_right(word, vocab):
    ids_of = {b: i for i, b in vocab.items()}
    data, out = word.encode("utf-8"), []
    while data:
        for start in range(len(data)):
            if data[start:] in ids_of:
                out.insert(0, ids_of[data[start:]])
                data = data[:start]
                break
    return out


@pytest.mark.parametrize("wrong, phrase", [
    (lambda word, vocab: reference_bpe().byte_ids(word), "one token per byte"),
    (_from_the_right, "from the right end"),
    (lambda word, vocab: [vocab[i].decode("latin-1") for i in longest_match(word, vocab)], "as text"),
    (lambda word, vocab: longest_match(word, vocab)[:-1], "do not spell the word"),
    (lambda word, vocab: None, "should return a list of ids"),
    (lambda word, vocab: 1 / 0, "raised ZeroDivisionError"),
])
def test_longest_match_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_longest_match, wrong, capsys, phrase)


def test_longest_match_rejects_bpe_encoding(capsys):
    """The library's encode (section 6's merge replay) segments unseen words differently."""
    model = reference_bpe()
    assert_fails(check_longest_match, lambda word, vocab: model.encode(word), capsys, "you gave BPE's tokens")
    assert_fails(check_longest_match, lambda word, vocab: bpe.apply_merges(model.byte_ids(word), model.merges),
                 capsys, "replaying the merges")


# --- exercise 3: a streaming decoder --------------------------------------------------------------

def stream_decode(ids, vocab):
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(vocab[i]) for i in ids]


def stream_decode_by_hand(ids, vocab):
    """Emit the longest prefix of the buffer that decodes; keep up to 3 trailing bytes of a started character."""
    pieces, buffer = [], b""
    for i in ids:
        buffer += vocab[i]
        for cut in range(len(buffer), max(len(buffer) - 4, -1), -1):
            try:
                pieces.append(buffer[:cut].decode("utf-8"))
                buffer = buffer[cut:]
                break
            except UnicodeDecodeError:
                continue
    return pieces


@pytest.mark.parametrize("right", [stream_decode, stream_decode_by_hand])
def test_stream_decode_right_answers(capsys, right):
    assert_passes(check_stream_decode, right, capsys)


def test_stream_decode_not_attempted(capsys):
    assert_fails(check_stream_decode, not_attempted, capsys, "not attempted")


def _cumulative(ids, vocab):
    pieces = stream_decode(ids, vocab)
    return ["".join(pieces[:k + 1]) for k in range(len(pieces))]


def _all_at_the_end(ids, vocab):
    text = "".join(stream_decode(ids, vocab))
    return [""] * (len(ids) - 1) + [text]


def _flushes_the_tail(ids, vocab):
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [decoder.decode(vocab[i]) for i in ids]
    pieces[-1] += decoder.decode(b"", final=True)
    return pieces


@pytest.mark.parametrize("wrong, phrase", [
    (_cumulative, "the whole text so far"),
    (_all_at_the_end, "as soon as its last byte has arrived"),
    (_flushes_the_tail, "hold its bytes back"),
    (lambda ids, vocab: stream_decode(ids, vocab)[:-1], "pieces for"),
    (lambda ids, vocab: [p.upper() for p in stream_decode(ids, vocab)], "expected"),
    (lambda ids, vocab: [vocab[i] for i in ids], "should return a list of str"),
])
def test_stream_decode_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_stream_decode, wrong, capsys, phrase)


def test_stream_decode_rejects_the_librarys_decode(capsys):
    model = reference_bpe()
    assert_fails(check_stream_decode, lambda ids, vocab: model.decode(ids), capsys, "returned one string")
    assert_fails(check_stream_decode, lambda ids, vocab: [model.decode([i]) for i in ids], capsys,
                 "decoded each token on its own")
