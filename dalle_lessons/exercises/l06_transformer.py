"""Self-checks for lesson 06 (the DALL·E transformer).

Each exercise asks for something the lesson does not show, so neither the library nor the lesson's
own functions pass: the stream of a layout that marks the image with a start-of-image token instead
of a fixed position; an experiment that replaces the per-position pad vectors by one shared vector
and measures the losses; and a word shuffle for an experiment on word order. Each check runs the
learner's function on small seeded inputs (the experiment's on small randomly initialised models, so
a hard-coded measurement fails), compares it with a private reference and, when it differs, tries
the usual mistakes so that the feedback can name the one that was made.
"""
from __future__ import annotations

import copy
import itertools
from typing import Callable

import torch

from dalle_lessons.config import TransformerConfig
from dalle_lessons.exercises import Feedback, call_learner, report
from dalle_lessons.transformer import DalleTransformer


def _captions(text_len: int, lengths: list[int], vocab: int, gen: torch.Generator, pad_id: int = 0) -> torch.Tensor:
    """[len(lengths), text_len] captions of distinct word ids (never pad_id), right-padded with pad_id."""
    words = [i for i in range(vocab) if i != pad_id]
    rows = []
    for length in lengths:
        order = torch.randperm(len(words), generator=gen)[:text_len]
        row = torch.tensor([words[i] for i in order])
        row[length:] = pad_id
        rows.append(row)
    return torch.stack(rows)


# --- exercise 1: a stream with a start-of-image token ----------------------------------------------

def packed_stream_reference(text_ids: torch.Tensor, image_ids: torch.Tensor, text_vocab_size: int, pad_id: int,
                            bos_id: int, soi_id: int) -> list[torch.Tensor]:
    """One 1-D stream per pair: [bos, the caption's words (pads dropped), soi, image ids + text_vocab_size]."""
    return [torch.cat([torch.tensor([bos_id]), text[text != pad_id], torch.tensor([soi_id]), image + text_vocab_size])
            for text, image in zip(text_ids, image_ids)]


def _packed_variant(text: torch.Tensor, image: torch.Tensor, vocab: int, pad_id: int, bos_id: int, soi_id: int,
                    mistake: str) -> torch.Tensor:
    """One pair's stream as a common mistake builds it (for feedback only)."""
    bos, soi = torch.tensor([bos_id]), torch.tensor([soi_id])
    words = text[text != pad_id]
    parts = {
        "kept_pads": [bos, text, soi, image + vocab],
        "course_layout": [bos, text, image + vocab],
        "no_soi": [bos, words, image + vocab],
        "no_bos": [words, soi, image + vocab],
        "no_offset": [bos, words, soi, image],
        "bos_soi_swapped": [soi, words, bos, image + vocab],
        "soi_at_end": [bos, words, image + vocab, soi],
        "zero_as_pad": [bos, text[text != 0], soi, image + vocab],
        "last_dropped": [bos, words, soi, (image + vocab)[:-1]],
    }[mistake]
    return torch.cat(parts)


_PACKED_MISTAKES = {
    "course_layout": "this is the course's own layout, [bos | the caption padded to T | image]: the pads are kept "
                     "and nothing marks the image. Drop the pads (the ids equal to pad_id) and put soi_id "
                     "between the caption's words and the image.",
    "kept_pads": "you kept the pads. In a packed stream there are no pads: keep only the caption's words (the ids "
                 "that are not pad_id), so that the image starts right after them, wherever that is.",
    "no_soi": "the start-of-image token is missing. Without pads the image starts at a different position for "
              "every caption, so the stream must say where: put soi_id between the words and the image.",
    "no_bos": "the start token is missing: the stream begins with bos_id, so that the first word is predicted "
              "from something.",
    "no_offset": "the image ids are not shifted. In one shared vocabulary, image id v is written "
                 "text_vocab_size + v; otherwise image token 5 and text token 5 would be the same id.",
    "bos_soi_swapped": "bos_id and soi_id are swapped: bos_id starts the stream, soi_id comes right before the "
                       "first image token.",
    "soi_at_end": "soi_id belongs before the image (it announces it), not after it.",
    "zero_as_pad": "you dropped the ids equal to 0, but the pad is pad_id (here {pad_id}), and 0 is an ordinary "
                   "word in these captions. Compare with pad_id.",
    "last_dropped": "the last image token is missing: return the whole stream. (A model would read all but the "
                    "last token and predict all but the first; that cut comes later.)",
}


def _packed_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int, int, int, int]]:
    """(name, text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id)."""
    gen = torch.Generator().manual_seed(61)
    small_text = _captions(6, [3, 6, 0], 20, gen)  # a short caption, a full one and an empty one
    small_image = torch.randint(0, 8, (3, 4), generator=gen)  # 2x2 images, codebook of 8
    course_text = _captions(24, [9, 14, 24], 512, gen)
    course_image = torch.randint(0, 512, (3, 64), generator=gen)  # 8x8 images, codebook of 512
    odd_text = _captions(5, [2, 4], 12, gen, pad_id=3)
    odd_text[:, 0] = 0  # id 0 is a word here: every caption starts with it
    odd_image = torch.randint(0, 6, (2, 4), generator=gen)
    return [("3 captions of 6 slots (3 words, 6 words, none), pad_id 0, text vocabulary 20, 2x2 images",
             small_text, small_image, 20, 0, 28, 29),
            ("3 captions of 24 slots (9, 14 and 24 words), pad_id 0, text vocabulary 512, 8x8 images",
             course_text, course_image, 512, 0, 1024, 1025),
            ("2 captions of 5 slots (2 and 4 words, the first word id 0), pad_id 3, text vocabulary 12",
             odd_text, odd_image, 12, 3, 18, 19)]


def _as_streams(got, batch: int, what: str) -> list[torch.Tensor]:
    if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[0] == batch:
        return list(got.long())  # one 2-D tensor: its rows may still say what went wrong (the check decides)
    if isinstance(got, torch.Tensor):
        raise Feedback(f"{what} returned one tensor of shape {tuple(got.shape)}. Return a list with one 1-D "
                       "tensor per pair: packed streams have different lengths, which is the point.")
    if (isinstance(got, tuple) and len(got) == 2 and batch != 2
            and all(isinstance(t, torch.Tensor) and t.dim() == 2 for t in got)):
        raise Feedback(f"{what} returned two 2-D tensors, like (inputs, targets) of a padded stream. Return the "
                       f"streams themselves: a list of {batch} 1-D tensors, one per pair, with no pads.")
    if not isinstance(got, (list, tuple)) or len(got) != batch:
        length = f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""
        raise Feedback(f"{what} should return a list of {batch} streams (one 1-D tensor per pair), but it "
                       f"returned {type(got).__name__}{length}.")
    streams = []
    for row, stream in enumerate(got):
        if not isinstance(stream, torch.Tensor):
            raise Feedback(f"{what}: stream {row} is a {type(stream).__name__}; make each stream a 1-D torch.Tensor "
                           "(torch.cat of the pieces).")
        if stream.dim() != 1:
            raise Feedback(f"{what}: stream {row} has shape {tuple(stream.shape)}; each stream is 1-D, one id per "
                           "position.")
        if stream.is_floating_point():
            raise Feedback(f"{what}: stream {row} is {stream.dtype}; ids must be integers (torch.long).")
        streams.append(stream.long())
    return streams


def check_packed_stream(fn: Callable[..., list[torch.Tensor]]) -> bool:
    """Exercise 1: `fn(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id)` -> one stream per pair."""

    def check() -> None:
        for name, text, image, vocab, pad_id, bos_id, soi_id in _packed_cases():
            what = f"Your packed_stream (with {name})"
            got = call_learner(fn, what, text.clone(), image.clone(), vocab, pad_id, bos_id, soi_id,
                               hint=" Hint: text[text != pad_id] keeps one caption's words; torch.cat joins 1-D "
                                    "pieces.")
            streams = _as_streams(got, len(text), what)
            want = packed_stream_reference(text, image, vocab, pad_id, bos_id, soi_id)
            for row, (mine, right) in enumerate(zip(streams, want)):
                if torch.equal(mine, right):
                    continue
                for mistake, message in _PACKED_MISTAKES.items():
                    variant = _packed_variant(text[row], image[row], vocab, pad_id, bos_id, soi_id, mistake)
                    if torch.equal(mine, variant) and not torch.equal(variant, right):
                        raise Feedback(f"With {name}, pair {row}: {message.format(pad_id=pad_id)}")
                if isinstance(got, torch.Tensor):
                    raise Feedback(f"{what} returned one tensor of shape {tuple(got.shape)}. Return a list with "
                                   "one 1-D tensor per pair: packed streams have different lengths, which is the "
                                   "point (no padding them back to one length).")
                if len(mine) != len(right):
                    raise Feedback(f"With {name}, pair {row}: your stream has {len(mine)} ids, expected "
                                   f"{len(right)}: 1 (bos) + {len(right) - 2 - len(image[row])} words + 1 (soi) + "
                                   f"{len(image[row])} image tokens.")
                k = int((mine != right).nonzero()[0])
                raise Feedback(f"With {name}, pair {row}: position {k} should be {int(right[k])} but is "
                               f"{int(mine[k])}. The stream is [bos_id, the words, soi_id, image ids + "
                               "text_vocab_size].")

    return report("Exercise 1 (a stream with a start-of-image token)", check)


# --- exercise 2 (experiment): one pad vector for every position -----------------------------------

def _pad_cases() -> list[tuple[str, DalleTransformer, torch.Tensor, torch.Tensor]]:
    """(name, model, text_ids, image_ids): two small random models whose pad vectors clearly differ."""
    cases = []
    for seed, (T, grid, d, layers, lengths) in enumerate(((6, 2, 16, 1, [2, 4, 6, 0]),
                                                          (8, 3, 24, 2, [3, 8, 5]))):
        config = TransformerConfig(text_seq_len=T, text_vocab_size=30, image_vocab_size=16, image_grid=grid,
                                   d_model=d, n_layers=layers, n_heads=2)
        gen = torch.Generator().manual_seed(60 + seed)
        model = DalleTransformer(config, generator=gen).eval()
        with torch.no_grad():  # embeddings of size 1 (the init's 0.02 would make every variant look alike)
            for table in (model.text_emb.weight, model.pad_emb.weight, model.image_emb.weight):
                table.copy_(torch.randn(table.shape, generator=gen))
        text = _captions(T, lengths, 30, gen)
        image = torch.randint(0, 16, (len(lengths), grid * grid), generator=gen)
        cases.append((f"a random {layers}-layer model, {len(lengths)} captions of {T} slots with "
                      f"{', '.join(map(str, lengths))} words", model, text, image))
    return cases


def _losses_with_pads(model: DalleTransformer, text: torch.Tensor, image: torch.Tensor,
                      pads: torch.Tensor) -> tuple[float, float]:
    """The model's (text loss, image loss) with its pad table replaced by `pads` ([T, d] or broadcastable)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.pad_emb.weight.copy_(pads.expand_as(other.pad_emb.weight))
        out = other(text, image)
    return out.text_loss.item(), out.image_loss.item()


def one_pad_losses_reference(model: DalleTransformer, text_ids: torch.Tensor,
                             image_ids: torch.Tensor) -> tuple[float, float]:
    """(text loss, image loss) with every pad vector replaced by the mean of the model's pad vectors."""
    return _losses_with_pads(model, text_ids, image_ids, model.pad_emb.weight.detach().mean(0))


def _pad_variants(model: DalleTransformer, text: torch.Tensor, image: torch.Tensor) -> dict[str, tuple[float, float]]:
    pads = model.pad_emb.weight.detach()
    with torch.no_grad():
        out = model(text, image)
    return {
        "unchanged": (out.text_loss.item(), out.image_loss.item()),
        "first_pad": _losses_with_pads(model, text, image, pads[0]),
        "zeros": _losses_with_pads(model, text, image, torch.zeros_like(pads[0])),
        "token_of_pad": _losses_with_pads(model, text, image, model.text_emb.weight.detach()[model.config.pad_id]),
        "last_pad": _losses_with_pads(model, text, image, pads[-1]),
    }


_PAD_MISTAKES = {
    "unchanged": "these are the model's own losses: nothing was replaced (a plain model(text_ids, image_ids), or "
                 "validate, gives them). Give every text position the same pad vector, the mean of the "
                 "model's pad vectors, and measure again.",
    "first_pad": "every position got pad vector 0, pad_emb.weight[0]. Use the mean of all the pad vectors, "
                 "pad_emb.weight.mean(0), so that no position's own vector is favoured.",
    "last_pad": "every position got the last pad vector. Use the mean of all the pad vectors, "
                "pad_emb.weight.mean(0).",
    "zeros": "you set the pad vectors to zero, or to vectors whose components are all equal, which the first "
             "LayerNorm turns into zero (did you average over axis 1, each vector's own components?). That removes "
             "the pads rather than sharing one. Give every position the mean of the T pad vectors, "
             "pad_emb.weight.mean(0).",
    "token_of_pad": "you used the token embedding of the pad id, text_emb.weight[pad_id]; the model never reads "
                    "that row. Share the mean of its pad vectors, pad_emb.weight.mean(0).",
}


def _two_numbers(got, what: str) -> tuple[float, float]:
    if isinstance(got, dict):
        raise Feedback(f"{what} returned a dict. Return two numbers, (text_loss, image_loss).")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
        raise Feedback(f"{what} should return two numbers, (text_loss, image_loss), but it returned "
                       f"{type(got).__name__}{length}.")
    numbers = []
    for value in got:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, (int, float)):
            raise Feedback(f"{what} should return two numbers, (text_loss, image_loss); one of them is "
                           f"{type(value).__name__}" + (f" of shape {tuple(value.shape)}" if isinstance(
                               value, torch.Tensor) else "") + ".")
        numbers.append(float(value))
    return numbers[0], numbers[1]


def check_one_pad_losses(fn: Callable[..., tuple[float, float]]) -> bool:
    """Exercise 2: `fn(model, text_ids, image_ids)` -> (text_loss, image_loss) with one shared pad vector."""

    def check() -> None:
        for name, model, text, image in _pad_cases():
            what = f"Your one_pad_losses (with {name})"
            before = {key: value.clone() for key, value in model.state_dict().items()}
            with torch.no_grad():  # as in the notebook, which turns gradients off
                got = call_learner(fn, what, model, text.clone(), image.clone(),
                                   hint=" Hint: copy.deepcopy(model) gives a model you may change.")
            changed = [key for key, value in model.state_dict().items() if not torch.equal(value, before[key])]
            if changed:
                raise Feedback(f"{what} changed the model it was given ({', '.join(changed)}). The notebook "
                               "goes on using the shipped model after this exercise: change a copy "
                               "(copy.deepcopy(model)) and leave the original as it was.")
            mine = _two_numbers(got, what)
            want = one_pad_losses_reference(model, text, image)
            if all(abs(a - b) < 1e-5 for a, b in zip(mine, want)):
                continue
            variants = _pad_variants(model, text, image)
            for mistake, losses in variants.items():
                if all(abs(a - b) < 1e-5 for a, b in zip(mine, losses)):
                    raise Feedback(f"With {name}: {_PAD_MISTAKES[mistake]}")
            if all(abs(a - b) < 1e-5 for a, b in zip(mine, want[::-1])):
                raise Feedback(f"With {name}: your two numbers are swapped; return (text_loss, image_loss).")
            raise Feedback(f"With {name}: your losses are ({mine[0]:.4f}, {mine[1]:.4f}), expected "
                           f"({want[0]:.4f}, {want[1]:.4f}). On a copy of the model, set every row of "
                           "pad_emb.weight to pad_emb.weight.mean(0), run the copy on (text_ids, image_ids) and "
                           "return its text_loss and image_loss.")

    return report("Exercise 2 (one pad vector for every position)", check)


# --- exercise 3 (experiment): shuffle each caption's words ----------------------------------------

def _shuffle_cases() -> list[tuple[str, torch.Tensor, int]]:
    gen = torch.Generator().manual_seed(63)
    first = _captions(8, [5, 8, 3, 1, 0, 6], 40, gen)
    odd = _captions(6, [4, 2, 6, 5], 20, gen, pad_id=7)
    odd[:, 0] = 0  # id 0 is a word here
    return [("6 captions of 8 slots (5, 8, 3, 1, 0 and 6 words), pad_id 0", first, 0),
            ("4 captions of 6 slots (4, 2, 6 and 5 words, the first word id 0), pad_id 7", odd, 7)]


def _shuffled_rows_message(got: torch.Tensor, text: torch.Tensor, pad_id: int) -> str | None:
    """A message when captions were moved whole between pairs or emptied, else None."""
    rows = [tuple(r.tolist()) for r in text]
    moved = [tuple(r.tolist()) in rows and tuple(r.tolist()) != rows[i] and bool((r != pad_id).any())
             for i, r in enumerate(got)]  # an emptied caption is not another pair's caption
    if sum(moved) >= 2 and all(tuple(r.tolist()) in rows for r in got):
        return ("your rows are whole captions of other pairs: you shuffled the captions between pairs (as section "
                "7's 'another pair's caption' does). Shuffle the words *within* each caption instead.")
    emptied = (got == pad_id).all(1) & (text != pad_id).any(1)
    if emptied.any():
        return (f"caption {int(emptied.nonzero()[0])} came back empty, all pads. Emptying captions is caption "
                "dropout (drop_captions), a different experiment: keep each caption's words and change their order.")
    return None


def _permutation_frequencies(fn: Callable, pad_id: int, seed: int) -> dict[tuple[int, ...], float]:
    """Shuffle one 3-word caption 3,000 times (one batch); the frequency of each order of its words."""
    caption = torch.tensor([11, 12, 13] + [pad_id] * 3)
    batch = caption.expand(3000, -1).clone()
    got = call_learner(fn, "Your shuffle_words (3,000 copies of one 3-word caption)", batch, pad_id,
                       torch.Generator().manual_seed(seed))
    got = torch.as_tensor(got)
    counts: dict[tuple[int, ...], int] = {}
    for row in got[:, :3].tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    return {order: counts.get(order, 0) / len(got) for order in itertools.permutations((11, 12, 13))}


def check_shuffle_words(fn: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]) -> bool:
    """Exercise 3: `fn(text_ids, pad_id, generator)` -> each caption's words in a random order, pads in place."""

    def check() -> None:
        for name, text, pad_id in _shuffle_cases():
            what = f"Your shuffle_words (with {name})"
            given = text.clone()
            got = call_learner(fn, what, given, pad_id, torch.Generator().manual_seed(5),
                               hint=" Hint: torch.randperm(n, generator=generator) orders n words.")
            if not torch.equal(given, text):
                raise Feedback(f"{what} changed text_ids in place. The notebook goes on using the captions it "
                               "passes in: shuffle a copy (text_ids.clone()) and return it.")
            if not isinstance(got, torch.Tensor):
                raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(got).__name__}.")
            if got.shape != text.shape:
                raise Feedback(f"{what} returned shape {tuple(got.shape)}; return the captions in their own shape, "
                               f"{tuple(text.shape)}, each row that caption with its words reordered.")
            if got.is_floating_point():
                raise Feedback(f"{what} returned {got.dtype}; ids must stay integers (torch.long).")
            message = _shuffled_rows_message(got, text, pad_id)
            if message:
                raise Feedback(f"With {name}: {message}")
            is_pad = text == pad_id
            if not torch.equal(got == pad_id, is_pad):
                row = int(((got == pad_id) != is_pad).any(1).nonzero()[0])
                raise Feedback(f"With {name}, caption {row}: the pads moved ({text[row].tolist()} became "
                               f"{got[row].tolist()}). A caption's words are at its front and its pads after them; "
                               "shuffle only the words (the first n ids, n = the number that are not pad_id) and "
                               "leave every pad where it is.")
            for row in range(len(text)):
                if sorted(got[row].tolist()) != sorted(text[row].tolist()):
                    raise Feedback(f"With {name}, caption {row}: the words changed ({text[row].tolist()} became "
                                   f"{got[row].tolist()}). A shuffle only reorders a caption's own words.")
            if torch.equal(got, text):
                raise Feedback(f"With {name}: nothing moved, every caption came back in its own order. Reorder "
                               "each caption's words with torch.randperm(n, generator=generator).")
            again = call_learner(fn, what, text.clone(), pad_id, torch.Generator().manual_seed(5))
            if not torch.equal(torch.as_tensor(again), got):
                raise Feedback(f"With {name}: two calls with generators seeded alike gave different orders. Draw "
                               "the permutations with the generator you are given (torch.randperm(n, "
                               "generator=generator)), so that an experiment can be repeated exactly.")
        frequencies = _permutation_frequencies(fn, 0, 9)
        seen = [order for order, share in frequencies.items() if share > 0]
        if len(seen) == 1:
            raise Feedback("3,000 copies of the caption [11, 12, 13, pad, pad, pad] all came back in the same "
                           f"order, {list(seen[0])}: draw a new random order for each caption, not one for the "
                           "batch (or a fixed one such as the reverse).")
        worst = max(frequencies, key=lambda order: abs(frequencies[order] - 1 / 6))
        if abs(frequencies[worst] - 1 / 6) > 0.035:
            raise Feedback("Over 3,000 shuffles of the caption [11, 12, 13, pad, pad, pad], the order "
                           f"{list(worst)} came out {frequencies[worst]:.1%} of the time; each of the 6 orders of "
                           "3 words should come out about 1/6 (16.7 %). A rotation or a swap reaches only some "
                           "orders: use torch.randperm(n, generator=generator) for each caption.")

    return report("Exercise 3 (shuffling each caption's words)", check)
