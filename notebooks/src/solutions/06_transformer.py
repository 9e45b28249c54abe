# %% [markdown]
# # 06 · The transformer: training DALL·E: solutions
#
# Worked solutions to the exercises of lesson 06 ([06_transformer.ipynb](../06_transformer.ipynb)).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing. The two
# experiments are then run on the pretrained course model, and their results discussed.

# %%
import copy

import torch
import torch.nn.functional as F

from dalle_lessons import checkpoints
from dalle_lessons.exercises.l06_transformer import check_one_pad_losses, check_packed_stream, check_shuffle_words
from dalle_lessons.paths import data_dir
from dalle_lessons.shapes import BACKGROUNDS, Scene, ShapesDataset, render, to_tensor
from dalle_lessons.tokenizer import CaptionTokenizer
from dalle_lessons.train_dalle import token_data
from dalle_lessons.transformer import DalleTransformer

torch.set_grad_enabled(False)  # as in the lesson: nothing here trains
torch.set_printoptions(precision=4, sci_mode=False)

dalle = checkpoints.load(data_dir() / "dalle-cpu.safetensors").eval()  # the lesson's pretrained model
cfg = dalle.config
T, N, g = cfg.text_seq_len, cfg.image_seq_len, cfg.image_grid
V_text, V_image = cfg.text_vocab_size, cfg.image_vocab_size
VAL = 128
val_pairs = token_data("val", 1000)  # the lesson's validation pairs (cached in data/cache/)
val_text, val_image = val_pairs.text[:VAL], val_pairs.image[:VAL]
tokenizer = CaptionTokenizer.load()

# %% [markdown]
# ### Exercise 1: a stream with a start-of-image token
#
# One caption at a time: `text[text != pad_id]` keeps its words in order (the pads are all at the end, so
# this is also `text[:n]` with `n` the number of words). Then join the four pieces. The streams have
# different lengths, which is why the result is a list and not one tensor.

# %%
def packed_stream(text_ids: torch.Tensor, image_ids: torch.Tensor, text_vocab_size: int, pad_id: int,
                  bos_id: int, soi_id: int) -> list[torch.Tensor]:
    streams = []
    for text, image in zip(text_ids, image_ids):
        words = text[text != pad_id]
        streams.append(torch.cat([torch.tensor([bos_id]), words, torch.tensor([soi_id]), image + text_vocab_size]))
    return streams


assert check_packed_stream(packed_stream)

bos_id, soi_id = V_text + V_image, V_text + V_image + 1  # two new ids after both vocabularies
streams = packed_stream(val_text[:8], val_image[:8], V_text, cfg.pad_id, bos_id, soi_id)
starts = [int((stream == soi_id).nonzero()[0]) + 1 for stream in streams]
print("first image token at index:", starts, f"  (course layout: always {T + 1})")
print("stream lengths:            ", [len(stream) for stream in streams], f"  (course layout: always {1 + T + N})")

# %% [markdown]
# The boundary moves with the caption's length: that is what the start-of-image token is for. A model
# reading this stream cannot know from a position alone whether it is predicting a word or an image token,
# so the token before the image must say so (and, with one shared vocabulary, the model must also learn that
# after `soi` only image ids are possible, where two heads make that a structural fact).
#
# The packed streams are shorter (no pads), which saves compute; the padded layout buys a fixed boundary,
# equal-length batches, and the paper's per-position pads. In the padded layout a `soi` token would sit at
# index 25 in every stream: always the same id in the same place, it tells the model nothing that position
# 25's embedding does not.
#
# ### Exercise 2 (experiment): one pad vector for every position
#
# Work on a copy, so the model you were given stays as it was: `copy.deepcopy(model)`, then overwrite every
# row of the copy's pad table with the mean row. (`pad_emb.weight[:] = mean` broadcasts one `d`-sized vector
# over the `T` rows; under `torch.no_grad()`, or with gradients off as in the lesson, an in-place write to a
# parameter is allowed.) The loss is what the model already computes.

# %%
def one_pad_losses(model: DalleTransformer, text_ids: torch.Tensor, image_ids: torch.Tensor) -> tuple[float, float]:
    shared = copy.deepcopy(model)
    with torch.no_grad():
        shared.pad_emb.weight[:] = model.pad_emb.weight.mean(0)
        out = shared(text_ids, image_ids)
    return out.text_loss.item(), out.image_loss.item()


assert check_one_pad_losses(one_pad_losses)

own = dalle(val_text, val_image)
empty_text = dalle.empty_text(VAL)
own_empty = dalle(empty_text, val_image)
shared_text, shared_image = one_pad_losses(dalle, val_text, val_image)
empty_shared = one_pad_losses(dalle, empty_text, val_image)[1]
print(f"{VAL} validation pairs{'':14} {'text loss':>9} {'image loss':>10}")
print(f"{'own captions, 24 pad vectors':32} {own.text_loss:9.3f} {own.image_loss:10.3f}")
print(f"{'own captions, one shared pad':32} {shared_text:9.3f} {shared_image:10.3f}")
print(f"{'empty captions, 24 pad vectors':32} {'':9} {own_empty.image_loss:10.3f}")
print(f"{'empty captions, one shared pad':32} {'':9} {empty_shared:10.3f}")
assert abs(shared_image - own.image_loss.item()) < 0.02 and abs(shared_text - own.text_loss.item()) < 0.02
assert abs(empty_shared - own_empty.image_loss.item()) < 0.05

pads, positions = dalle.pad_emb.weight, dalle.text_pos.embedding.weight[1:]
unit = F.normalize(pads, dim=1)
print(f"pad vectors: mean length {pads.norm(dim=1).mean():.2f} (position embeddings: "
      f"{positions.norm(dim=1).mean():.2f}); length of their mean {pads.mean(0).norm():.2f}; mean cosine "
      f"between two of them {(unit @ unit.T - torch.eye(T)).sum() / (T * (T - 1)):+.2f}")

# %% [markdown]
# **What it shows.** Almost nothing changes: the image loss moves by a few thousandths of a nat with real
# captions, and by about 0.01 on empty captions, where every one of the 24 slots is a pad. The lesson's
# attention plot showed image positions giving about a fifth of their attention to pads, so attention alone
# would suggest the pads matter. The intervention says their *per-position identity* carries almost nothing
# the model needs: each slot's learned position embedding already tells it apart, and the pads it does read
# work much like one shared "no word here" vector.
#
# The pad vectors were not left untrained (the last printed line): they are about as long as the position
# embeddings and point in unrelated directions, so their mean is much shorter than any of them, and the
# shared vector really is a different input.
#
# This does not refute the paper. Its reason for per-position pads was better results on
# *out-of-distribution* captions, at 12 billion parameters and 256 text slots, and it reported a slightly
# *higher* validation loss for them. Our captions come from a small grammar and are never out of
# distribution, so this experiment measures only that the pretrained model, on its own kind of caption,
# does not depend on them. A fair comparison with the paper would train two models, one with shared pads,
# and test both on unusual captions: a run of twenty minutes each on this CPU, the kind of thing
# `FULL_TRAINING` is for.
#
# ### Exercise 3 (experiment): does the model read word order?
#
# One permutation per caption, applied to its first `n` slots, on a copy. `torch.randperm(n,
# generator=generator)` draws a uniformly random order, and drawing it from the given generator makes the
# experiment repeatable.

# %%
def shuffle_words(text_ids: torch.Tensor, pad_id: int, generator: torch.Generator) -> torch.Tensor:
    shuffled = text_ids.clone()
    for row in range(len(text_ids)):
        n = int((text_ids[row] != pad_id).sum())  # the words are the first n slots; the pads follow
        shuffled[row, :n] = text_ids[row, torch.randperm(n, generator=generator)]
    return shuffled


assert check_shuffle_words(shuffle_words)

# %% [markdown]
# Now the measurement: which cells hold an object (as in the lesson's section 7: render each object alone,
# a cell is the object's when any of its 4×4 pixels differs from the background), and the image loss there
# with the own, shuffled and empty captions, for one-object and two-object scenes apart. The last column is
# the share of what the caption is worth (the gap between no caption and its own) that shuffling loses.

# %%
def cells_covered(obj, background: str) -> torch.Tensor:
    alone = to_tensor(render(Scene((obj,), background), 32))
    differs = (alone - torch.tensor(BACKGROUNDS[background])[:, None, None] / 255).abs().amax(0) > 0.1
    return differs.view(g, 4, g, 4).any(3).any(1).flatten()


scenes = ShapesDataset("val", VAL).scenes
object_cells = torch.stack([torch.stack([cells_covered(o, s.background) for o in s.objects]).any(0) for s in scenes])
two = torch.tensor([len(s.objects) == 2 for s in scenes])[:, None]
shuffled = shuffle_words(val_text, cfg.pad_id, torch.Generator().manual_seed(0))
for i in (1, 0):  # a two-object caption and a one-object one
    print(f"{tokenizer.decode(val_text[i])!r:62} -> {tokenizer.decode(shuffled[i])!r}")
losses = {name: F.cross_entropy(dalle(text, val_image).image_logits.transpose(1, 2), val_image, reduction="none")
          for name, text in (("its own caption", val_text), ("shuffled words", shuffled),
                             ("the empty caption", empty_text))}
print(f"image loss on object cells with   {'one object':>10} {'two objects':>12}")
for name, ce in losses.items():
    print(f"{name:33} {ce[object_cells & ~two].mean():10.2f} {ce[object_cells & two].mean():12.2f}")
lost = {}
for kind, cells in (("one object", object_cells & ~two), ("two objects", object_cells & two)):
    own_, shuffled_, empty_ = (losses[name][cells].mean().item() for name in losses)
    lost[kind] = (shuffled_ - own_) / (empty_ - own_)
print("share of the caption's worth lost by shuffling:", ", ".join(f"{k} {v:.0%}" for k, v in lost.items()))
assert 0 < lost["one object"] < lost["two objects"] < 1

# %% [markdown]
# **What it shows.** Shuffled captions land *between* the own and the empty caption, and where depends on the
# scene. For one object, shuffling loses only about a fifth of what the caption is worth: "circle small a
# red" still names one colour, one shape and one size, and the model picks them up as a bag of words. For
# two objects it loses more than half: with the words scrambled, the model no longer knows which colour goes
# with which shape, which object is on the left, or how big each is. So the model does read word order, and
# it needs it exactly where a caption binds attributes to objects.
#
# Two cautions. The shuffled captions are out of distribution (the model never saw one), so part of the cost
# may be confusion rather than lost information; a model *trained* on shuffled captions would tell the two
# apart, at the price of a full training run. And this is teacher forcing: the true cells already drawn give
# much away, so the figures understate what the words are worth when the model draws on its own (lesson 07).
# Lesson 08 meets the same question from the other side: a contrastive text encoder tends to read a bag of
# words, and hard negatives that swap attributes are what teach it binding.
#
# ## Check your understanding: answers
#
# 1. **Why no start-of-image token?** Every caption is padded to 24 slots, so the first image token is
#    always at stream index 25 and always predicted by position 24, which knows where it is from its learned
#    position embedding; the model routes positions `0 … 23` to the text head and `24 … 87` to the image
#    head. A start-of-image token there would be the same id at the same index in every stream: one more
#    position, no information. One is needed when the boundary moves, as in a packed layout without pads
#    (exercise 1), where the image begins right after the last word.
# 2. **One mean over all tokens.** Every token would weigh the same, so the text would get 256 / 1,280 =
#    20 % of the loss and the image 80 %; with the paper's weights it gets 12.5 %. The paper is "primarily
#    interested in image modeling", and the split would also shift with every change of text length; each
#    term's own mean makes the weights 1/8 and 7/8 hold whatever the numbers of tokens.
# 3. **A masked joint head.** A logit of −∞ has probability exactly 0, so the softmax over the joint
#    vocabulary equals the softmax over the unmasked half, which is what one head per vocabulary computes
#    from the same weights. Two heads save the logits that would be masked: the course computes 45,056
#    instead of 90,112 per pair, the paper 12.6 million instead of 31.5 million.
# 4. **The first cell of each object.** Under teacher forcing every cell read before it is background, so
#    only the caption can say that an object starts here, and which; once the object has begun, the true
#    cells already drawn give much of the rest away. When the model samples, nothing true is given: the first
#    cell is drawn from the model's own, least certain, guess, and every later cell builds on it. That is
#    where a drawing goes wrong first, and where guidance (lesson 07) helps most.
# 5. **Attention to pads.** No: attention shows where a head looks, not what the model needs. The test is an
#    intervention: change the pads and measure the loss. Exercise 2 replaced every pad vector by their mean
#    and the image loss barely moved, so the per-position identity of the pads is not what the pretrained
#    model relies on here (which says nothing against the paper's reason, robustness on unusual captions).
