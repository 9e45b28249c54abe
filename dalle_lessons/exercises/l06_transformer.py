"""Self-checks for lesson 06 (the DALL·E transformer).

Each check calls the learner's function on small seeded inputs, compares the result with a reference
built from the library's conventions and, when it differs, tries the usual mistakes so that the
feedback can name the one that was made.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from dalle_lessons.exercises import Feedback, call_learner, report

ATOL = 1e-5  # float32 sums of a few embeddings, or cross-entropies of small logits: ~1e-7 apart


def _as_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Feedback(f"{what} should return a torch.Tensor, but it returned {type(value).__name__}.")
    return value


def _captions(text_len: int, lengths: list[int], vocab: int, gen: torch.Generator, pad_id: int = 0) -> torch.Tensor:
    """[len(lengths), text_len] caption ids (never pad_id) right-padded with pad_id."""
    ids = torch.randint(1, vocab, (len(lengths), text_len), generator=gen)
    ids = torch.where(ids == pad_id, ids + 1, ids)
    for row, length in enumerate(lengths):
        ids[row, length:] = pad_id
    return ids


# --- exercise 1: the stream, its inputs and its targets -------------------------------------------

def reference_stream(text_ids: torch.Tensor, image_ids: torch.Tensor, text_vocab_size: int,
                     bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), both [B, T + N]: the stream [bos | text | image + text_vocab_size], shifted by one."""
    bos = torch.full((text_ids.shape[0], 1), bos_id, dtype=torch.long)
    stream = torch.cat([bos, text_ids, image_ids + text_vocab_size], dim=1)
    return stream[:, :-1], stream[:, 1:]


def _stream_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int, int]]:
    """(name, text_ids, image_ids, text_vocab_size, bos_id): two batches of different sizes."""
    gen = torch.Generator().manual_seed(6)
    small_text = _captions(5, [3, 5], 20, gen)
    small_image = torch.randint(0, 8, (2, 4), generator=gen)  # a 2x2 image, codebook of 8
    course_text = _captions(24, [9, 14, 24], 512, gen)
    course_image = torch.randint(0, 512, (3, 64), generator=gen)  # 8x8 image, codebook of 512
    return [("3 captions of 24 tokens and 8x8 images (text vocabulary 512, image vocabulary 512)",
             course_text, course_image, 512, 512 + 512),
            ("2 captions of 5 tokens and 2x2 images (text vocabulary 20, image vocabulary 8)",
             small_text, small_image, 20, 20 + 8)]


def _check_pair(got, want_shape: tuple[int, int], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Feedback(f"{what} should return two tensors, (inputs, targets), but it returned "
                       f"{type(got).__name__}{'' if not isinstance(got, (tuple, list)) else f' of length {len(got)}'}.")
    inputs, targets = (_as_tensor(t, f"{what} (each of inputs and targets)") for t in got)
    B, L = want_shape
    for name, t in (("inputs", inputs), ("targets", targets)):
        if t.dtype.is_floating_point:
            raise Feedback(f"Your {name} are {t.dtype}: ids must be integers (torch.long), the kind an "
                           "embedding table and cross_entropy take.")
        if t.shape == (B, L + 1):
            raise Feedback(f"Your {name} have {L + 1} positions: that is the whole stream [bos | text | image]. "
                           "The model reads every token but the last (inputs = stream[:, :-1]) and predicts "
                           f"every token but the first (targets = stream[:, 1:]): {L} positions each.")
        if t.shape == (B, L - 1):
            raise Feedback(f"Your {name} have {L - 1} positions, one too few: did you leave out the <bos> id? "
                           "The stream is [bos | text | image], so that position 0 (reading <bos>) can "
                           f"predict the first caption token; inputs and targets have {L} positions each.")
        if t.shape != (B, L):
            raise Feedback(f"Your {name} have shape {tuple(t.shape)}; both inputs and targets should be "
                           f"{(B, L)}: one row per pair, text_seq_len + image tokens = {L} positions.")
    return inputs.long(), targets.long()


def check_stream(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Exercise 1: `fn(text_ids, image_ids, text_vocab_size, bos_id)` -> (inputs, targets)."""

    def check() -> None:
        for name, text, image, vocab, bos_id in _stream_cases():
            T, N = text.shape[1], image.shape[1]
            what = "my_stream(...)"
            got = call_learner(fn, f"my_stream (with {name})", text.clone(), image.clone(), vocab, bos_id,
                        hint=" Hint: torch.cat([...], dim=1) joins [B, 1], [B, T] and [B, N] tensors.")
            inputs, targets = _check_pair(got, (text.shape[0], T + N), what)
            want_in, want_out = reference_stream(text, image, vocab, bos_id)
            if torch.equal(inputs, want_in) and torch.equal(targets, want_out):
                continue
            raw_in, raw_out = reference_stream(text, image - vocab, vocab, bos_id)  # image ids not offset
            if torch.equal(inputs, want_out) and torch.equal(targets, want_in):
                raise Feedback(f"With {name}: inputs and targets are swapped. The model reads the stream "
                               "without its last token and predicts it without its first: inputs = "
                               "stream[:, :-1], targets = stream[:, 1:], so targets[:, p] is the token "
                               "after inputs[:, p].")
            if torch.equal(inputs, raw_in) and torch.equal(targets, raw_out):
                raise Feedback(f"With {name}: the image ids are not shifted. In one shared vocabulary, image "
                               f"id v must become text_vocab_size + v (here {vocab} + v); otherwise image "
                               f"token 5 and text token 5 would be the same id.")
            if torch.equal(inputs, targets):
                raise Feedback(f"With {name}: your inputs and targets are the same, so every position would be "
                               "asked to predict the token it reads, which it can simply copy. Shift by one: "
                               "targets = stream[:, 1:], inputs = stream[:, :-1].")
            if torch.equal(targets, want_out) and not torch.equal(inputs[:, 0], want_in[:, 0]):
                raise Feedback(f"With {name}: your targets are right, but inputs[:, 0] should be bos_id "
                               f"({bos_id}), the start token in front of the caption.")
            if torch.equal(targets[:, :T], text) and torch.equal(inputs, want_in):
                raise Feedback(f"With {name}: your inputs are right; check the image part of the targets: "
                               "targets[:, T:] is the image ids shifted into the shared vocabulary, "
                               "image_ids + text_vocab_size.")
            for part, (got_part, want_part) in {"inputs": (inputs, want_in), "targets": (targets, want_out)}.items():
                wrong = (got_part != want_part).nonzero()
                if len(wrong):
                    row, pos = (int(i) for i in wrong[0])
                    raise Feedback(f"With {name}: {part}[{row}, {pos}] should be {int(want_part[row, pos])} but is "
                                   f"{int(got_part[row, pos])}. The stream is [bos | caption ids | image ids + "
                                   f"text_vocab_size]; inputs = stream[:, :-1], targets = stream[:, 1:].")

    return report("Exercise 1 (the stream, its inputs and targets)", check)


# --- exercise 2: the text embedding with one pad per position -------------------------------------

def reference_text_embedding(text_ids: torch.Tensor, token_table: torch.Tensor, pad_table: torch.Tensor,
                             position_table: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """[B, T, d]: each caption token's embedding, or at a pad the pad vector of that position, plus the position's."""
    T = text_ids.shape[1]
    tokens = torch.where((text_ids == pad_id)[..., None], pad_table[:T], token_table[text_ids])
    return tokens + position_table[:T]


def _embedding_variant(text_ids, token_table, pad_table, position_table, pad_id, mistake: str) -> torch.Tensor:
    """The text embedding as a common mistake computes it (for feedback only)."""
    T = text_ids.shape[1]
    is_pad = (text_ids == pad_id)[..., None]
    tokens = token_table[text_ids]
    if mistake == "shared_pad":
        pads = pad_table[0].expand(T, -1)
    elif mistake == "pad_counted_from_end_of_caption":
        pad_number = (text_ids == pad_id).long().cumsum(1) - 1  # the k-th pad of the caption gets pad_table[k]
        pads = pad_table[pad_number.clamp(min=0)]
    else:
        pads = pad_table[:T]
    if mistake == "pad_ignored":
        mixed = tokens
    elif mistake == "pad_added":
        mixed = tokens + is_pad * pads
    elif mistake == "pad_everywhere":
        mixed = pads.expand_as(tokens)
    else:
        mixed = torch.where(is_pad, pads, tokens)
    if mistake == "no_position":
        return mixed
    if mistake == "no_position_on_pads":
        return mixed + ~is_pad * position_table[:T]
    return mixed + position_table[:T]


_EMBEDDING_MISTAKES = {
    "shared_pad": "every pad gets the same vector, pad_table[0]. The paper learns one pad embedding per text "
                  "position: a pad at position t gets pad_table[t].",
    "pad_counted_from_end_of_caption": "you numbered the pads from the end of the caption (the first pad gets "
                                       "pad_table[0]). The pad vector belongs to the position: a pad at "
                                       "position t gets pad_table[t], whatever the caption's length.",
    "pad_ignored": "pads get the token embedding of the pad id, token_table[pad_id], like any token. At a pad "
                   "position use that position's own pad vector, pad_table[t], instead.",
    "pad_added": "at pads you added the pad vector to token_table[pad_id]. The pad vector replaces the token "
                 "embedding there (torch.where(is_pad, pad vectors, token vectors)), it is not added to it.",
    "pad_everywhere": "you used the pad vectors at every position, caption words included. Only positions "
                      "holding pad_id get pad_table[t]; the others get token_table[id].",
    "no_position": "you left out the position embedding. Every position, pad or not, adds position_table[t].",
    "no_position_on_pads": "the pads have no position embedding. Add position_table[t] at every position, "
                           "pads included.",
}


def check_text_embedding(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 2: `fn(text_ids, token_table, pad_table, position_table, pad_id)` -> [B, T, d]."""

    def check() -> None:
        gen = torch.Generator().manual_seed(7)
        cases = []
        for T, V, d, lengths, pad_id in ((8, 30, 6, [3, 8, 0, 5], 0), (24, 512, 16, [12, 7, 20], 0),
                                         (6, 12, 4, [2, 4], 3)):
            tables = [torch.randn(n, d, generator=gen) for n in (V, T, T)]
            ids = _captions(T, lengths, V, gen, pad_id)
            described = (f"{len(lengths)} captions of {T} positions with {', '.join(map(str, lengths))} "
                         f"words" + (f" and pad_id={pad_id}" if pad_id else ""))
            cases.append((described, ids, *tables, pad_id))
        for name, ids, token_table, pad_table, position_table, pad_id in cases:
            args = (ids.clone(), token_table.clone(), pad_table.clone(), position_table.clone(), pad_id)
            got = _as_tensor(call_learner(fn, f"my_text_embedding (with {name})", *args,
                                   hint=" Hint: token_table[text_ids] looks up every id at once, [B, T, d]."),
                             "my_text_embedding")
            want = reference_text_embedding(ids, token_table, pad_table, position_table, pad_id)
            if got.shape != want.shape:
                raise Feedback(f"With {name}: the embedding should be {tuple(want.shape)}, one d-sized vector per "
                               f"(caption, position), but you returned {tuple(got.shape)}.")
            if torch.allclose(got.double(), want.double(), atol=ATOL, rtol=0):
                continue
            for mistake, message in _EMBEDDING_MISTAKES.items():
                variant = _embedding_variant(ids, token_table, pad_table, position_table, pad_id, mistake)
                if torch.allclose(got.double(), variant.double(), atol=ATOL, rtol=0):
                    if mistake == "pad_ignored" and pad_id != 0:  # right with pad_id 0, so: compared with 0
                        message = (f"your function found no pads. Here the pads are id {pad_id}: compare "
                                   "text_ids with the pad_id argument, not with 0.")
                    raise Feedback(f"With {name}: {message}")
            error = (got.double() - want.double()).abs().amax(-1)
            row, pos = (int(i) for i in (error == error.max()).nonzero()[0])
            kind = "a pad" if int(ids[row, pos]) == pad_id else f"token {int(ids[row, pos])}"
            raise Feedback(f"With {name}: caption {row}, position {pos} ({kind}) is off by up to "
                           f"{float(error[row, pos]):.3f}. Recall: token_table[id] (or pad_table[t] at a pad) "
                           "+ position_table[t].")

    return report("Exercise 2 (text embedding with one pad per position)", check)


# --- exercise 3: the weighted loss ----------------------------------------------------------------

def reference_loss(text_logits, image_logits, text_targets, image_targets, text_weight=1 / 8, image_weight=7 / 8):
    """text_weight * mean text cross-entropy + image_weight * mean image cross-entropy."""
    text = F.cross_entropy(text_logits.flatten(0, 1), text_targets.flatten())
    image = F.cross_entropy(image_logits.flatten(0, 1), image_targets.flatten())
    return text_weight * text + image_weight * image


def _loss_variants(tl, il, tt, it, wt, wi) -> dict[str, torch.Tensor]:
    """The loss as common mistakes compute it (for feedback only), float64."""
    tl, il = tl.double(), il.double()

    def ce(logits, targets, reduction="mean"):
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)

    def raw(logits, targets):  # -logit of the target, with no log-softmax
        return -logits.gather(-1, targets[..., None]).mean()

    text, image = ce(tl, tt), ce(il, it)
    per_token = torch.cat([ce(tl, tt, "none"), ce(il, it, "none")])
    return {
        "one_mean": per_token.mean(),
        "swapped": wi * text + wt * image,
        "unweighted_sum": text + image,
        "unweighted_mean": (text + image) / 2,
        "image_only": image,
        "hardcoded": text / 8 + 7 * image / 8,
        "sum_reduction": wt * ce(tl, tt, "sum") + wi * ce(il, it, "sum"),
        "per_caption_sum": wt * ce(tl, tt, "sum") / tl.shape[0] + wi * ce(il, it, "sum") / il.shape[0],
        "no_log_softmax": wt * raw(tl, tt) + wi * raw(il, it),
        "double_softmax": wt * ce(tl.softmax(-1), tt) + wi * ce(il.softmax(-1), it),
    }


_LOSS_MISTAKES = {
    "one_mean": "you took one mean over all the tokens, text and image together. Then each modality's share "
                "depends on how many tokens it has. Take the mean of each separately, then weight them: "
                "text_weight * text_loss + image_weight * image_loss.",
    "swapped": "the weights are swapped: text_weight multiplies the text cross-entropy and image_weight the image one.",
    "unweighted_sum": "you added the two cross-entropies without their weights: multiply the text one by "
                      "text_weight and the image one by image_weight.",
    "unweighted_mean": "you averaged the two cross-entropies: weight them instead, text_weight * text + "
                       "image_weight * image.",
    "image_only": "your loss has only the image term. The text term stays (with weight text_weight): it is what "
                  "teaches the model to read captions as language.",
    "hardcoded": "you wrote the weights 1/8 and 7/8 into the function; use the text_weight and image_weight "
                 "arguments (this case passes other weights).",
    "sum_reduction": "you summed the cross-entropy over the tokens instead of averaging it. Each term is a mean "
                     "over its own tokens (F.cross_entropy's default reduction).",
    "per_caption_sum": "you summed over the positions and averaged over the batch. Each term is a mean over all "
                       "its tokens (F.cross_entropy's default reduction, on [B * n, V] logits).",
    "no_log_softmax": "you took minus the raw logit of the right token. Cross-entropy is minus its *log-"
                      "probability*: log_softmax first (F.cross_entropy does it for you).",
    "double_softmax": "you applied a softmax before F.cross_entropy, which applies log_softmax itself: give it "
                      "the raw logits.",
}


def check_weighted_loss(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise 3: `fn(text_logits, image_logits, text_targets, image_targets, text_weight, image_weight)`."""

    def check() -> None:
        gen = torch.Generator().manual_seed(8)
        cases = []
        for B, T, N, V_t, V_i, wt, wi in ((2, 5, 9, 11, 7, 1 / 8, 7 / 8), (3, 24, 64, 512, 512, 1 / 8, 7 / 8),
                                          (2, 4, 16, 6, 10, 0.3, 0.7)):
            tl, il = 2 * torch.randn(B, T, V_t, generator=gen), 2 * torch.randn(B, N, V_i, generator=gen)
            tt, it = torch.randint(0, V_t, (B, T), generator=gen), torch.randint(0, V_i, (B, N), generator=gen)
            name = (f"{B} pairs of {T} text and {N} image positions, weights {wt:.3g} and {wi:.3g}")
            cases.append((name, tl, il, tt, it, wt, wi))
        for name, tl, il, tt, it, wt, wi in cases:
            tl_in, il_in = tl.clone().requires_grad_(), il.clone().requires_grad_()
            got = call_learner(fn, f"my_dalle_loss (with {name})", tl_in, il_in, tt.clone(), it.clone(), wt, wi,
                        hint=" Hint: F.cross_entropy takes logits [n, vocab] and targets [n]: flatten the "
                             "batch and position axes first (logits.flatten(0, 1), targets.flatten()).")
            if isinstance(got, float):
                raise Feedback("Your loss is a Python float, so there is nothing to backpropagate through. Keep "
                               "it a tensor (no .item()).")
            got = _as_tensor(got, "my_dalle_loss")
            if got.numel() != 1:
                raise Feedback(f"The loss should be one number (a scalar tensor), but yours has shape "
                               f"{tuple(got.shape)}: average over the tokens, then weight and add the two terms.")
            if not got.requires_grad:
                raise Feedback("Your loss does not carry gradients back to the logits: build it from the logits "
                               "with torch operations (no .item(), .detach() or .numpy() on the way).")
            want = reference_loss(tl.double(), il.double(), tt, it, wt, wi)
            value = got.detach().double().reshape(())
            if torch.allclose(value, want, atol=ATOL, rtol=0):
                continue
            for mistake, variant in _loss_variants(tl, il, tt, it, wt, wi).items():
                if torch.allclose(value, variant, atol=ATOL, rtol=0):
                    raise Feedback(f"With {name}: {_LOSS_MISTAKES[mistake]}")
            raise Feedback(f"With {name}: your loss is {value.item():.4f}, expected {want.item():.4f}. Recall: "
                           "text_weight * F.cross_entropy(text logits, text targets) + image_weight * "
                           "F.cross_entropy(image logits, image targets), each on [n, vocab] logits.")

    return report("Exercise 3 (the weighted loss)", check)
