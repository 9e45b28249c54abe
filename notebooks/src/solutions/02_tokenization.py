# %% [markdown]
# # 02 · Tokenization: solutions
#
# Worked solutions to the exercises of lesson 02 (`notebooks/02_tokenization.ipynb`). Try them
# yourself first: each check tells you what is wrong in plain words. Every solution below is followed
# by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import codecs
from collections import Counter

from dalle_lessons.exercises.l02_tokenization import (CORPUS, check_longest_match, check_stream_decode,
                                                      check_wordpiece_pair, reference_bpe)

# %% [markdown]
# ### Exercise 1: WordPiece's choice of merge
#
# Count tokens and pairs in one pass over the words, each weighted by its word's frequency, then take the
# pair with the highest `count(a b) / (count(a) count(b))`. `min` with the key `(−score, pair)` puts the
# highest score first and breaks ties toward the smallest pair, exactly as section 5's `most_frequent`
# does with counts.
#
# The score favours pairs whose parts rarely occur apart: two rare tokens that always meet score high,
# while two common tokens (a space and `a`, say) that meet often, but no more often than chance would
# have them, score low. BPE's count would merge the common pair first.

# %%
def my_wordpiece_pair(words: dict[tuple[int, ...], int]) -> tuple[int, int]:
    tokens, pairs = Counter(), Counter()
    for word, freq in words.items():
        for token in word:
            tokens[token] += freq
        for pair in zip(word, word[1:]):
            pairs[pair] += freq
    return min(pairs, key=lambda p: (-pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))


assert check_wordpiece_pair(my_wordpiece_pair)

words = {(1, 2, 3): 5, (1, 3): 4, (4, 5): 2}
counts = Counter()
for word, freq in words.items():
    for pair in zip(word, word[1:]):
        counts[pair] += freq
print("BPE merges", min(counts, key=lambda p: (-counts[p], p)), "; WordPiece merges", my_wordpiece_pair(words))

# %% [markdown]
# ### Exercise 2: longest-match encoding
#
# A dictionary from bytes to id makes each lookup one step; at each position, try the longest slice
# first and shorten it until it is in the vocabulary (a single byte always is, so the loop ends).

# %%
def my_longest_match(word: str, vocab: dict[int, bytes]) -> list[int]:
    ids_of = {token: i for i, token in vocab.items()}
    data, out, start = word.encode("utf-8"), [], 0
    while start < len(data):
        end = len(data)
        while data[start:end] not in ids_of:
            end -= 1
        out.append(ids_of[data[start:end]])
        start = end
    return out


assert check_longest_match(my_longest_match)

model = reference_bpe()
vocab = {i: b for i, b in model.vocab.items() if isinstance(b, bytes)}
words = sorted({w for caption in CORPUS for w in caption.replace(",", " ,").split(" ") if w})
same = sum(my_longest_match(" " + w, vocab) == model.encode(" " + w) for w in words)
print(f"on the {len(words)} words BPE was trained on, longest match agrees with BPE on {same}")
for word in (" smallest", " largely"):
    print(f"{word!r}: BPE {model.tokens(word)}, longest match {[model.token_str(i) for i in my_longest_match(word, vocab)]}")

# %% [markdown]
# On the training words the two agree: BPE's merges built every one of them up to a single token (or
# the same pieces). On a new word they can differ: BPE replays its merges in order, and an early merge
# (`l` + `e`) can claim bytes that a longer token (`Ġsmall`) would have covered. Neither split is wrong;
# they are different tokenizers over the same vocabulary, and a model must be given the one it was
# trained with.
#
# ### Exercise 3: a streaming decoder
#
# UTF-8 says from a character's first byte how many bytes it has, so a decoder can tell a complete
# character from a started one. Python's incremental decoder keeps exactly that state: `decode(chunk)`
# returns the complete characters and keeps the bytes of an unfinished one for the next call. Never
# calling it with `final=True` is what holds back a character the ids stopped in the middle of.

# %%
def my_stream_decode(ids: list[int], vocab: dict[int, bytes]) -> list[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(vocab[i]) for i in ids]


assert check_stream_decode(my_stream_decode)

ids = model.encode(" café 🎨")
print([model.token_str(i) for i in ids])
print(my_stream_decode(ids, vocab))
assert "".join(my_stream_decode(ids, vocab)) == model.decode(ids) == " café 🎨"

# %% [markdown]
# ## Check your understanding: answers
#
# 1. **Nothing is unknown.** Every string is a sequence of UTF-8 bytes, and the vocabulary starts with all 256
#    byte values, so any text, in any alphabet, can be written with them; the merges only shorten what the
#    bytes already spell. A word-level vocabulary must map every word it did not store to one "unknown"
#    id, and the model loses the word. The cost of the guarantee: a word never seen in training falls
#    apart into small pieces, down to single bytes (and an emoji takes several byte tokens), so it uses
#    more of the fixed text length and the model has seen those pieces together rarely or never.
# 2. **Merges across words.** The most frequent pairs in Shapes captions would soon be whole phrases
#    (`" a red"`, `" to the"`, `" left of"`), so the vocabulary would fill with combinations of words
#    instead of reusable pieces: the same word would get different ids depending on its neighbour, and
#    a new combination of known words would tokenize badly. Pre-tokenizing keeps each merge inside one
#    word, so the vocabulary is spent on words and the pieces of words.
# 3. **Running out of pairs.** The 2,000 training captions hold only 80 distinct pre-tokenized words. Once every one of
#    them had been merged into a single token, no adjacent pair was left inside any word, and the loop
#    stopped with fewer than 512 tokens. A real corpus has an open-ended number of distinct words (names,
#    numbers, typos, other languages), so there is always another pair to merge.
# 4. **Same rule, same ids.** A model's embedding table is indexed by ids: it learns what id 300 means.
#    Another tie rule learns other merges at tied steps, so the same text gets other ids, and a model
#    trained with one tokenizer reads garbage from the other. Using the library's rule lets the
#    from-scratch BPE be checked id for id against `tokenizers`, and lets the course train its tokenizer
#    with the fast library and still explain it with the readable code.
# 5. **Dropout.** Skipping merges at random shows the model the same word split in different ways, so it
#    learns how pieces combine into words (Provilkov et al. report better translation and more robustness
#    to misspelled input); at test time the plain, deterministic split is used, since that is the one inputs will have.
#    Skipped merges leave more, smaller pieces, so a caption gets longer: on the training captions from
#    about 10 to about 13.5 tokens on average, and about 1 in 100 no longer fits in 24 and is truncated.
