# %% [markdown]
# # 02 · Tokenization: solutions
#
# Worked solutions to the exercises of lesson 02 (`notebooks/02_tokenization.ipynb`). Try them
# yourself first: each check tells you what is wrong in plain words. Every solution below is followed
# by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
from dalle_lessons import bpe
from dalle_lessons.exercises.l02_tokenization import (check_apply_merges, check_decode,
                                                      check_most_frequent_pair, reference_bpe)

model = reference_bpe()  # the small BPE the checks use, trained on a few captions
print(f"reference BPE: {len(model.merges)} merges, vocabulary {model.vocab_size}")

# %% [markdown]
# ### Exercise 1: which pair to merge
#
# Sort key `(-count, pair)`: the smallest key has the highest count, and among equal counts the
# smallest pair, compared left id first (that is how tuples compare). `min` over the dict's keys
# returns that pair without sorting everything. `max(counts, key=counts.get)` is the classic slip:
# on a tie it returns whichever pair was counted first, so the merges depend on the corpus order and
# no longer match `tokenizers`.

# %%
def my_most_frequent_pair(counts: dict[tuple[int, int], int]) -> tuple[int, int]:
    return min(counts, key=lambda pair: (-counts[pair], pair))


assert check_most_frequent_pair(my_most_frequent_pair)
print(my_most_frequent_pair({(3, 4): 7, (5, 9): 7, (3, 2): 7, (1, 8): 2}))

# %% [markdown]
# ### Exercise 2: encode a word
#
# Give each merge its rank (its position in the dict), then loop: among the word's adjacent pairs,
# take the one with the lowest rank; if none is a learned merge, stop; otherwise merge it everywhere
# with `merge` and look again. Pairs that were never learned get the rank `len(rank)`, larger than
# any real one, so `min` only picks them when nothing else is left.
#
# (An equivalent and even shorter solution walks the merges once, in order, applying each to the whole
# word: `for pair, new_id in merges.items(): ids = merge(ids, pair, new_id)`. It is correct because a
# merge can only create pairs that were learned *later*, but it is slow: it tries every merge on
# every word.)

# %%
def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Section 5's merge: replace every occurrence of `pair`, left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def my_apply_merges(ids: list[int], merges: dict[tuple[int, int], int]) -> list[int]:
    rank = {pair: r for r, pair in enumerate(merges)}
    ids = list(ids)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            break
        ids = merge(ids, pair, merges[pair])
    return ids


assert check_apply_merges(my_apply_merges)
for word in [" circle", " yellowish", " chartreuse"]:
    print(f"{word!r:14}", [model.token_str(i) for i in my_apply_merges(model.byte_ids(word), model.merges)])

# %% [markdown]
# ### Exercise 3: decode
#
# Join the bytes of all tokens first, then decode once, as UTF-8. `errors="replace"` turns a
# character cut in half (by truncation, say) into `'\ufffd'` instead of raising. Decoding token by
# token would break every character whose bytes are spread over several tokens, like the emoji.

# %%
def my_decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


assert check_decode(my_decode)
ids = model.encode(" café 🎨")
print(repr(my_decode(ids, model.vocab)), "|", repr(my_decode(ids[:-1], model.vocab)))
assert my_decode(ids, model.vocab) == model.decode(ids) == " café 🎨"
