# %% [markdown]
# # 02 · Tokenization: from captions to integers
#
# *Build DALL·E from Scratch, lesson 02.* Lesson 01 built a world of shapes, each picture with a
# caption such as *"a small blue square to the left of a yellow triangle"*. A transformer cannot read
# that sentence. It reads **integers**, one per token, from a vocabulary fixed before training. This
# lesson turns captions into integers the way DALL·E does: with **byte-pair encoding** (BPE).

# %% [markdown]
# ## What you will build
#
# ```
# caption ──tokenizer──▶ text ids ─┐
#   ▲                              ├─▶ [text | image] sequence ──transformer──▶ next-token logits
#   this lesson                    │
# image ──dVAE encoder──▶ image ids┘
# ```
#
# By the end of this lesson you will have:
#
# 1. seen why a transformer needs integer tokens, and a **fixed number** of them;
# 2. compared characters, words and subwords as tokens, on the Shapes captions;
# 3. built byte-level BPE **from scratch**: bytes, words, count pairs, merge the most frequent, repeat;
# 4. encoded and decoded text the model has never seen, including uppercase, accents and emoji;
# 5. checked your BPE against `dalle_lessons.tokenizer.CaptionTokenizer`, the production tokenizer
#    built on Hugging Face `tokenizers`: same merges, same ids, asserted;
# 6. met padding to a fixed length, over-long and empty captions, and BPE dropout.
#
# Everything here runs in a few seconds.

# %%
import warnings
from collections import Counter

import matplotlib.pyplot as plt
import torch

from dalle_lessons import bpe
from dalle_lessons.config import get_preset
from dalle_lessons.shapes import caption_corpus
from dalle_lessons.tokenizer import CaptionTokenizer, normalize_caption

plt.rcParams.update({"figure.dpi": 80})
cfg = get_preset("cpu").transformer  # the course default

# The first 2,000 training captions of the Shapes world (no images needed for this lesson).
captions = caption_corpus(2000, split="train", seed=0)
print(f"{len(captions)} training captions, for example:")
for caption in captions[:6]:
    print("  ", caption)

# %% [markdown]
# ## 1. A transformer reads integers
#
# The first layer of a transformer is an **embedding table**: one learned vector per token id
# (lesson 03 builds it). So before anything else, a caption must become a list of ids from a
# vocabulary that is fixed once and for all.
#
# DALL·E puts the caption's ids **in front of** the image's ids and models the whole thing as one
# stream, predicting each token from the ones before it:
#
# ```
# [ t1 t2 t3 … pad pad | i1 i2 i3 … i1024 ]
#   └── 256 text tokens ┘└─ 1024 image tokens ┘     (the paper: 16,384 text ids, 8,192 image ids)
# ```
#
# Two requirements follow. The vocabulary must cover **every caption a user might type**, because
# there is no way to add a token after training. And the text has a **fixed length**, padded when the
# caption is short, so that the image always starts at the same position. The course's `cpu` preset
# shrinks those numbers to fit a laptop:

# %%
for name, ours, paper in [("text positions (text_seq_len)", cfg.text_seq_len, "256"),
                          ("text vocabulary (text_vocab_size)", cfg.text_vocab_size, "16,384"),
                          ("image positions", cfg.image_seq_len, "1,024")]:
    print(f"{name:<35}{ours:>5}   (paper: {paper})")

# %% [markdown]
# ## 2. Characters, words, or something in between?
#
# What should one token be? The two obvious answers each fail in their own way. Count them on the
# captions:

# %%
chars = Counter(ch for c in captions for ch in c)
word_vocab = Counter(w for c in captions for w in c.split())
mean_chars = sum(len(c) for c in captions) / len(captions)
mean_words = sum(len(c.split()) for c in captions) / len(captions)
print(f"{'token = ':<12}{'vocabulary':>11}{'tokens per caption':>21}")
print(f"{'character':<12}{len(chars):>11}{mean_chars:>21.1f}")
print(f"{'word':<12}{len(word_vocab):>11}{mean_words:>21.1f}")

prompt = "A Chartreuse dodecahedron at the top left"
print(f"\nwords of {prompt!r} never seen in training:", [w for w in prompt.split() if w not in word_vocab])

# %% [markdown]
# - **Characters** make a tiny vocabulary (29 here) but long sequences: about 5× more tokens per
#   caption than words. Attention costs grow with the square of the length, and the model must first
#   learn to spell before it can learn what *"crimson"* means.
# - **Words** make short sequences, but the vocabulary never closes. A user's *"Chartreuse"* or
#   *"dodecahedron"* has no id: it becomes `<unk>`, and the model cannot tell it from any other
#   unknown word. Real English needs hundreds of thousands of words, before typos and capitals.
# - **Subwords** sit in between: frequent words get a token of their own, rare words are spelled
#   from a few pieces, and nothing is ever unknown. BPE learns those pieces from data.
#
# DALL·E's choice: **BPE** with a vocabulary of **16,384**, on **lowercased** captions, at most
# **256** text tokens. We do the same at course scale: 512 and 24.

# %% [markdown]
# ## 3. Start from bytes, and nothing is ever unknown
#
# Every string is a sequence of UTF-8 **bytes**, and there are only 256 byte values. If the vocabulary
# starts with all 256 of them, any text can be written, whatever its alphabet:

# %%
for text in ["red", "Café", "東京", "🎨"]:
    data = text.encode("utf-8")
    print(f"{text!r:8} {len(text)} character(s) -> {len(data)} bytes {list(data)}")

# %% [markdown]
# Bytes are awkward to print (byte 32 is a space, byte 10 a newline, many others are invisible), so
# GPT-2 gives each byte a visible stand-in: printable bytes stand for themselves, and the others
# borrow characters from `Ā` onwards. The space becomes **`Ġ`**, and you will see it everywhere
# below. `tokenizers` uses the same map, so its vocabulary files look the same.

# %%
for text in [" ", "a", " red", "é", "🎨"]:
    print(f"{text!r:7} bytes {str(list(text.encode())):22} shown as {bpe.show(text.encode())!r}")

# %% [markdown]
# Our 256 first tokens are these bytes. Id 0 is reserved for the padding token `<pad>` (section 9),
# so the bytes take ids 1 to 256. We number them the way `tokenizers` does, **in the order of their
# stand-in characters** (`!` first, `Ġ` late), so that our ids can be compared with the library's
# one for one.

# %%
order = sorted(range(256), key=lambda b: bpe.BYTE_TO_CHAR[b])
vocab = {1 + i: bytes([b]) for i, b in enumerate(order)}  # id -> the bytes it stands for; 0 is <pad>
assert vocab == bpe.base_vocab(n_special=1)
byte_id = {token[0]: i for i, token in vocab.items()}
print("first ids:", {i: bpe.show(vocab[i]) for i in range(1, 6)}, "...")
print("id of the space 'Ġ':", byte_id[ord(" ")], "  id of 'a':", byte_id[ord("a")])

# %% [markdown]
# ## 4. Words first: normalization and pre-tokenization
#
# Two cheap steps come before BPE.
#
# **Normalize.** Like DALL·E, we lowercase: *"Red"*, *"RED"* and *"red"* should mean the same colour,
# and a small vocabulary should not spend ids on capitals. We also collapse runs of spaces and put
# **one space in front**, so the first word is spelled like every other word (`" red"`, not `"red"`).
#
# **Split into words.** GPT-2's pre-tokenizer cuts text into words, each keeping the space in front
# of it, with punctuation and digits apart. BPE then works **inside** words only: a merge never spans
# two words, so the vocabulary is spent on reusable pieces rather than on *"red circle"*.

# %%
for caption in ["A Large  RED circle", "top-left: a big crimson circle", "it's 2 discs!"]:
    normalized = normalize_caption(caption)
    print(f"{caption!r:34} -> {normalized!r:34} -> {bpe.pretokenize(normalized)}")

# %% [markdown]
# BPE only needs each distinct word once, with how often it occurs. The Shapes world has few words, so
# 2,000 captions shrink to a short table. Each word starts as a tuple of byte ids:

# %%
word_freq = Counter(w for c in captions for w in bpe.pretokenize(normalize_caption(c)))
start_words = {tuple(byte_id[b] for b in w.encode("utf-8")): n for w, n in sorted(word_freq.items())}
print(f"{sum(word_freq.values()):,} words in {len(captions):,} captions, {len(word_freq)} distinct")
print("most frequent:", word_freq.most_common(8))
print("' red' as byte ids:", tuple(byte_id[b] for b in b" red"))

# %% [markdown]
# ## 5. BPE: count pairs, merge the most frequent, repeat
#
# The whole training algorithm fits in one sentence: **find the most frequent pair of adjacent
# tokens, make it a new token, and repeat until the vocabulary is full.** Two small functions do the
# work. `count_pairs` counts adjacent pairs, each word weighted by its frequency:

# %%
def count_pairs(words: dict[tuple[int, ...], int]) -> Counter:
    """How often each adjacent pair of tokens occurs, over all words and their frequencies."""
    counts = Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out

# %% [markdown]
# `merge` scans left to right, so when pairs overlap (`a a a`) the left one wins. On the start words, the
# most frequent pairs:

# %%
assert merge([5, 6, 7, 5, 6], (5, 6), 99) == [99, 7, 99]
assert merge([5, 5, 5], (5, 5), 99) == [99, 5]  # overlapping pairs: the left one wins

counts = count_pairs(start_words)
print(f"{len(counts)} distinct pairs; the most frequent:")
for (a, b), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:8]:
    print(f"   {bpe.show(vocab[a])!r:>5} + {bpe.show(vocab[b])!r:<5} {n:>6,}")

# %% [markdown]
# Which pair wins when several are **equally** frequent? Any fixed rule works, but it changes which
# merges are learned. We use the rule of Hugging Face `tokenizers`: its trainer keeps the candidate
# pairs in a priority queue ordered by count and then by the pair of ids, **smallest first**. With the
# same rule, our merges can match the library's exactly (section 7 checks it).
#
# Now the loop, as a function of the tie rule `choose`. Each step also records the vocabulary size
# and the average number of tokens per caption (a caption is its words joined, so that is the words'
# lengths weighted by their frequencies).

# %%
def most_frequent(counts: Counter) -> tuple[int, int]:
    """The highest count; among equal counts the smallest (left id, right id), as `tokenizers` does."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


def tokens_per_caption(words: dict[tuple[int, ...], int]) -> float:
    return sum(len(word) * freq for word, freq in words.items()) / len(captions)


def train_bpe(words, vocab, vocab_size, choose=most_frequent):
    """Learn merges until the vocabulary (with <pad>) has vocab_size tokens or no pair is left."""
    vocab, merges = dict(vocab), {}  # merges: (left id, right id) -> new id, in the order learned
    history = [(1 + len(vocab), tokens_per_caption(words))]
    ties = []  # for each merge: how many pairs shared the winning count
    while 1 + len(vocab) < vocab_size:
        counts = count_pairs(words)
        if not counts:
            break  # every word is a single token: nothing left to merge
        pair = choose(counts)
        new_id = 1 + len(vocab)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges[pair] = new_id
        words = {tuple(merge(list(word), pair, new_id)): freq for word, freq in words.items()}
        ties.append(sum(n == counts[pair] for n in counts.values()))
        history.append((1 + len(vocab), tokens_per_caption(words)))
    return merges, vocab, history, ties

# %% [markdown]
# Trained up to the course's text vocabulary of 512, the first merges, and how many were decided by a tie:

# %%
merges, vocab, history, ties = train_bpe(start_words, vocab, cfg.text_vocab_size)
print(f"learned {len(merges)} merges; vocabulary: 1 pad + 256 bytes + {len(merges)} = {1 + len(vocab)}")
print(f"{'step':>4}  {'pair':<18}{'new token':<12}")
for step, ((a, b), new_id) in enumerate(list(merges.items())[:15], start=1):
    pair_text = f"{bpe.show(vocab[a])!r} + {bpe.show(vocab[b])!r}"
    note = f"(chosen among {ties[step - 1]} tied pairs)" if ties[step - 1] > 1 else ""
    print(f"{step:>4}  {pair_text:<18}{bpe.show(vocab[new_id])!r:<12}{note}")
print(f"... {sum(t > 1 for t in ties)} of the {len(merges)} merges were decided by a tie")

# %% [markdown]
# The first merges glue the space to frequent first letters (`Ġa`, `Ġt`, ...) and build common
# endings; after a few hundred steps whole words such as `Ġcircle` are single tokens. Training stopped
# **before** reaching 512: the Shapes world has so few distinct words that every one of them became a
# single token, and then no pair is left to merge. A real corpus never runs out.
#
# Each merge shortens the captions. Here is the trade the vocabulary buys:

# %%
sizes, lengths = zip(*history)
words_per_caption = sum(word_freq.values()) / len(captions)
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(sizes, lengths, label="BPE")
ax.axhline(words_per_caption, color="gray", linestyle="--", label="one token per word (the floor)")
ax.set_xlabel("vocabulary size")
ax.set_ylabel("tokens per caption")
ax.set_title("Every merge buys shorter captions")
ax.legend()
plt.show()
print(f"bytes only: {lengths[0]:.1f} tokens per caption; after {len(merges)} merges: {lengths[-1]:.1f}")
assert lengths[-1] < lengths[0] / 4

# %% [markdown]
# ## 6. Encode and decode
#
# To **encode** a new text, split it into words, start each word from its bytes, and replay the
# merges **in the order they were learned**: repeatedly merge the adjacent pair that was learned
# earliest, until no learned pair remains. That reproduces the segmentation training arrived at.
# (Exercise 2 asks you to write it.) To **decode**, join the tokens' bytes and read them as UTF-8.
#
# The package's `bpe.BPE` does exactly that; we hand it the merges we just learned:

# %%
scratch = bpe.BPE(merges, vocab, special_tokens=["<pad>"])
for text in ["a small blue square", "a chartreuse dodecahedron", "A RED CIRCLE", "un cercle rouge 🎨"]:
    normalized = normalize_caption(text)
    ids = scratch.encode(normalized)
    assert scratch.decode(ids) == normalized  # nothing lost, whatever the text
    print(f"{text!r:28} {len(ids):>2} tokens {scratch.tokens(normalized)}")

print("\nwithout lowercasing:", scratch.tokens(" A RED CIRCLE"))

# %% [markdown]
# Known words are one token each. The unseen *"chartreuse"* and *"dodecahedron"* are spelled from
# pieces, and the emoji falls back to its four bytes: **never unknown**, only longer. Without
# lowercasing, capitals would fall apart into single letters, which is why DALL·E lowercases.
#
# Why join the bytes **before** decoding? Because a token can hold part of a character. The emoji's four
# byte tokens mean nothing one at a time:

# %%
ids = scratch.encode(" 🎨")
print("tokens:", scratch.tokens(" 🎨"))
print("one at a time:", [scratch.decode([i]) for i in ids])
print("all together: ", repr(scratch.decode(ids)))

# %% [markdown]
# ## 7. Check it against the library
#
# The course's real tokenizer is `dalle_lessons.tokenizer.CaptionTokenizer`. It runs on Hugging Face
# `tokenizers` (Rust, fast, a standard JSON file format): the same normalization, GPT-2 pre-tokenizer,
# byte-level BPE trained by `BpeTrainer` with all 256 bytes in its alphabet, and `<pad>` at id 0.
# Trained on the same captions, it must learn **the same merges and give the same ids** as ours:

# %%
library = CaptionTokenizer.train(captions, vocab_size=cfg.text_vocab_size, text_seq_len=cfg.text_seq_len)
assert scratch.hf_merges() == library.merges()  # same merges, in the same order
assert scratch.hf_vocab() == library.vocab()  # same token for every id
checked = captions + ["A Chartreuse DODECAHEDRON", "un cercle rouge 🎨", "it's 2 huge discs!"]
for text in checked:
    n = library.count_tokens(text)
    assert scratch.encode(normalize_caption(text)) == library.encode(text)[:n]  # same ids
print(library)
print(f"same {len(library.merges())} merges, same vocabulary, same ids on {len(checked):,} texts")
print("first merges:", library.merges()[:6])

# %% [markdown]
# Matching the tie rule is what makes this possible: with, say, "the **largest** tied pair wins",
# the counts are the same but the merge list soon differs from the library's:

# %%
largest_wins = lambda counts: max(counts, key=lambda pair: (counts[pair], pair))
other, other_vocab, _, _ = train_bpe(start_words, bpe.base_vocab(1), cfg.text_vocab_size, largest_wins)
other = [(bpe.show(other_vocab[a]), bpe.show(other_vocab[b])) for a, b in other]
first = next(i for i, (x, y) in enumerate(zip(other, library.merges())) if x != y)
print(f"merge {first + 1}: tokenizers learns {library.merges()[first]}, 'largest wins' learns {other[first]}")
assert other != library.merges()

# %% [markdown]
# ## 8. The shipped tokenizer
#
# Training a tokenizer takes about a second, but every later lesson must use **the same** one: a
# model trained with one vocabulary cannot read ids from another. So the course ships it as
# `data/tokenizer.json`, trained on 20,000 training captions with
#
# ```
# python -m dalle_lessons train tokenizer --preset cpu --seed 0
# ```
#
# and every lesson loads it with `CaptionTokenizer.load()`. Training is deterministic (the same
# captions always give a byte-identical file), and the file is a standard `tokenizers` JSON: plain
# `tokenizers.Tokenizer.from_file` reads it, padding included.
#
# Compare it with the one we trained on 2,000 captions. The Shapes world is small, so both end up with
# the same tokens: every distinct word. But the counts differ, so the merges come in another order and
# the **ids** differ. That is exactly why the whole course must share one file.

# %%
tok = CaptionTokenizer.load()
print(tok)
same_tokens = set(tok.vocab()) == set(library.vocab())
same_ids = all(tok.encode(c) == library.encode(c) for c in captions)
print(f"compared with the tokenizer trained above on 2,000 captions: same tokens {same_tokens}, "
      f"same ids {same_ids}")
n_tokens = [tok.count_tokens(c) for c in captions]
print(f"tokens per caption: mean {sum(n_tokens) / len(n_tokens):.2f}, max {max(n_tokens)}; "
      f"{sum(n <= tok.text_seq_len for n in n_tokens) / len(n_tokens):.1%} fit in {tok.text_seq_len}")

# %% [markdown]
# ## 9. A fixed length: padding
#
# `encode` always returns exactly `text_seq_len` ids: the caption's tokens, then `<pad>` (id 0) up to
# the end. `encode_batch` stacks many captions into one `LongTensor`, ready for the model.

# %%
caption = "a small blue square to the left of a yellow triangle"
ids = tok.encode(caption)
print(tok.tokens(caption))
print(f"{len(ids)} ids:", ids)
print("decoded:", repr(tok.decode(ids)))

batch = tok.encode_batch(captions[:4])
print(f"\nencode_batch: {tuple(batch.shape)} {batch.dtype}")
print(batch)

# %% [markdown]
# Padding is not just filler: the transformer attends to those positions too. DALL·E does not use one
# shared pad vector; it learns **a separate pad embedding for each of the 256 text positions**, so
# "nothing at position 17" and "nothing at position 200" can mean different things to the model.
# Our tokenizer writes the same id 0 everywhere; lesson 06 turns a pad at position *i* into that
# position's own learned embedding.
#
# An **empty** caption is almost always a mistake, so `encode` refuses it with a clear message:

# %%
# NBVAL_RAISES_EXCEPTION
tok.encode("   ")

# %% [markdown]
# ... unless you ask for it on purpose. Lesson 07's *classifier-free guidance* needs exactly that: the
# model's prediction **without** a caption, from a text of nothing but pads.

# %%
print(tok.encode("", allow_empty=True))

# %% [markdown]
# ## 10. Too long: warn, or refuse
#
# A caption longer than `text_seq_len` tokens cannot fit. Silently cutting it would make the model
# draw something other than what was asked, so by default `encode` **warns**, naming the count and
# the limit, then keeps the first `text_seq_len` tokens. With `on_overflow="error"` it refuses
# instead, which is what a user-facing app should do.

# %%
long_prompt = ("a small blue square to the left of a yellow triangle, above a huge golden disc "
               "and below a tiny teal cross on a dark background")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ids = tok.encode(long_prompt)
print("UserWarning:", caught[0].message)
print("what the model sees:", repr(tok.decode(ids)))

try:
    tok.encode(long_prompt, on_overflow="error")
except ValueError as error:
    print("\nValueError:", error)

# %% [markdown]
# ## 11. BPE dropout
#
# BPE always splits a word the same way, so the model only ever sees *"triangle"* as one token and
# learns nothing about its pieces. **BPE dropout** (Provilkov et al., 2019) skips each possible merge
# with probability *p* while encoding **training** captions, so the same word arrives in different
# splits and the model learns how pieces combine; at test time *p* = 0. DALL·E's paper reports training
# with BPE dropout at rate 0.1.
#
# From scratch it is a small change to encoding: at every step, each candidate merge survives a coin
# flip, and the earliest-learned survivor is applied. Our coins come from a seeded `torch.Generator`,
# so the samples below are the same on every run:

# %%
def encode_with_dropout(ids: list[int], merges: dict, p: float, gen: torch.Generator) -> list[int]:
    """BPE with dropout: each candidate merge is dropped with probability p at every step."""
    rank = {pair: r for r, pair in enumerate(merges)}
    while True:
        candidates = [pair for pair in zip(ids, ids[1:]) if pair in rank]
        kept = [pair for pair in candidates if torch.rand((), generator=gen).item() >= p]
        if not kept:
            return ids
        best = min(kept, key=rank.get)
        ids = merge(ids, best, merges[best])


gen = torch.Generator().manual_seed(0)
word = " triangle"
print("no dropout:", scratch.tokens(word))
for p in (0.1, 0.1, 0.1, 0.1, 0.5, 0.5):
    ids = encode_with_dropout(scratch.byte_ids(word), merges, p, gen)
    assert scratch.decode(ids) == word  # same text, different split
    print(f"p = {p}:   ", [scratch.token_str(i) for i in ids])

# %% [markdown]
# The production tokenizer offers it as `encode(..., dropout=True)`, at the paper's rate 0.1. It is
# **off by default** because it is random: `tokenizers` draws its coins from an unseeded generator, so
# those splits cannot be reproduced from a seed. We can still check what must hold: the text never
# changes, and a split is never shorter than the plain one. Dropout has a cost in length, too: on the
# training captions it raises the average from about 10 to about 13.5 tokens, and roughly 1 caption
# in 100 no longer fits in 24 (it is then truncated, with a warning).

# %%
caption = "a small red circle"  # 19 bytes: even with every merge dropped it fits in 24 tokens
plain = tok.encode(caption)
draws = [tok.encode(caption, dropout=True) for _ in range(50)]
assert all(tok.decode(d) == caption for d in draws)
assert all(sum(i != 0 for i in d) >= sum(i != 0 for i in plain) for d in draws)
assert tok.encode(caption) == plain  # without dropout: always the same ids
print(f"50 dropout draws: all decode to {caption!r}; none is shorter than the plain "
      f"{sum(i != 0 for i in plain)} tokens")

# %% [markdown]
# ## 12. Exercises
#
# Each exercise asks for something this lesson has not shown: a variation of BPE or a new piece.
# Replace `raise NotImplementedError` with your code and run the cell below it; the check says, in
# plain words, what is wrong. Solutions are in [solutions/02_tokenization.ipynb](solutions/02_tokenization.ipynb).

# %%
from dalle_lessons.exercises.l02_tokenization import (check_longest_match, check_stream_decode,
                                                      check_wordpiece_pair)

# %% [markdown]
# ### Exercise 1: WordPiece's choice of merge
#
# BPE merges the most **frequent** pair. WordPiece (BERT's tokenizer) trains the same loop with another
# rule: it merges the pair with the highest
#
# $$\text{score}(a, b) = \frac{\text{count}(a\,b)}{\text{count}(a)\,\text{count}(b)}$$
#
# where `count(a)` is how often token `a` occurs, each word weighted by its frequency, like
# `count_pairs`. Write `my_wordpiece_pair(words)`: given `{word as a tuple of ids: frequency}` (the
# shape of `start_words`), return the pair WordPiece merges next; break ties toward the smallest pair,
# as in section 5. *Think first:* which pairs does this score favour that BPE's count does not?

# %%
def my_wordpiece_pair(words: dict[tuple[int, ...], int]) -> tuple[int, int]:
    # Your code here.
    raise NotImplementedError


ok = check_wordpiece_pair(my_wordpiece_pair)

# %% [markdown]
# ### Exercise 2: longest-match encoding
#
# Section 6 encodes a word by replaying the merges in the order they were learned. WordPiece encodes
# differently: from the left, take the **longest** token in the vocabulary that the rest of the word
# starts with, and repeat. Write `my_longest_match(word, vocab)`: `word` is one pre-tokenized word
# (such as `" smallest"`), `vocab` maps each id to its bytes; return the ids. *Think first:* with a BPE
# vocabulary, does longest match always give BPE's own split? The check tries words BPE never saw.

# %%
def my_longest_match(word: str, vocab: dict[int, bytes]) -> list[int]:
    # Your code here.
    raise NotImplementedError


ok = check_longest_match(my_longest_match)

# %% [markdown]
# ### Exercise 3: a streaming decoder
#
# A model that writes text (or a progress display of the tokens it reads) receives ids **one at a
# time**, and wants to show text as soon as it can. Section 6 showed that one token may hold part of a
# character. Write `my_stream_decode(ids, vocab)`: return one string per id, the characters that id
# **completes**, so that `"".join(pieces)` is the text. A character split over tokens appears with the
# token that brings its last byte (earlier pieces are `""`), and if the ids stop in the middle of a
# character, its bytes are held back: nothing is printed for them.

# %%
def my_stream_decode(ids: list[int], vocab: dict[int, bytes]) -> list[str]:
    # Your code here.
    raise NotImplementedError


ok = check_stream_decode(my_stream_decode)

# %% [markdown]
# ## Takeaways
#
# - A transformer reads ids from a fixed vocabulary, and DALL·E's text is a fixed-length **prefix**
#   of one stream with the image tokens, padded when the caption is short.
# - Characters make sequences too long; words leave the vocabulary open. **Subwords** are the
#   compromise, and **byte-level** BPE guarantees that no text is ever unknown: at worst it falls
#   back to bytes.
# - BPE training is *count adjacent pairs, merge the most frequent, repeat*, inside words only; encoding
#   replays the merges in the order they were learned. Ties need a rule: with the one of `tokenizers`
#   (the smallest pair of ids), our from-scratch BPE and the library learn identical merges and ids.
# - Captions that do not fit are never cut silently: a warning names the count and the limit, or
#   `on_overflow="error"` refuses. Empty captions are refused unless asked for (guidance needs them).
# - **Getting DALL·E right:** DALL·E (2021) has **no separate text encoder**: the caption's BPE tokens go
#   into the same decoder-only transformer as the image tokens, as the first part of one sequence
#   (DALL·E 2, a different model, conditions on CLIP text embeddings). Its text vocabulary is its own BPE
#   of **16,384** tokens on **lowercased** captions, up to **256** text tokens, not GPT-3's 50,257; text
#   and image ids (8,192 dVAE codes) are separate vocabularies, and each text position has its own
#   learned pad embedding.
#
# ## Check your understanding
#
# 1. Why can byte-level BPE encode any string, in any alphabet, while a word-level vocabulary cannot? What
#    does that guarantee cost for a word the tokenizer has never seen?
# 2. BPE merges only *inside* words, after pre-tokenization. What would go wrong, on the Shapes captions,
#    if merges could cross the spaces between words?
# 3. Training stopped before the vocabulary reached 512. Why did it, and why does that never happen on a
#    real corpus?
# 4. Any tie rule gives a working tokenizer. Why, then, does the course insist on the same tie rule as
#    `tokenizers`, and what would break if a model were trained with one rule and used with the other?
# 5. BPE dropout is applied while encoding training captions and switched off at test time. What does the
#    model learn from it, and why does it make some captions too long for the 24 text positions?
#
# The answers are in the [solutions notebook](solutions/02_tokenization.ipynb).
#
# **Next: [03 · embeddings and positions](03_embeddings_and_positions.ipynb)**, which turns these ids into
# vectors and tells the model where each token sits.
