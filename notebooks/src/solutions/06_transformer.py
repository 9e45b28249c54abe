# %% [markdown]
# # 06 · The transformer: training DALL·E: solutions
#
# Worked solutions to the exercises of lesson 06 (`notebooks/06_transformer.ipynb`).
# Try them yourself first: each check tells you what is wrong in plain words. Every solution below
# is followed by its check, asserted, so the tests fail if a solution ever stops passing.

# %%
import torch
import torch.nn.functional as F

from dalle_lessons.config import TransformerConfig
from dalle_lessons.exercises.l06_transformer import check_stream, check_text_embedding, check_weighted_loss
from dalle_lessons.transformer import DalleTransformer

torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ### Exercise 1: the stream, its inputs and its targets
#
# Build the whole stream first, `[bos | text | image + text_vocab_size]` (`1 + T + N` ids), then cut it
# twice: the model **reads** every token but the last and must **predict** every token but the first. So
# `targets[:, p]` is always the token right after `inputs[:, p]`. The shift of the image ids keeps the two
# vocabularies apart: without it, image id 5 and text id 5 would be the same token.

# %%
def my_stream(text_ids: torch.Tensor, image_ids: torch.Tensor, text_vocab_size: int,
              bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    bos = torch.full((text_ids.shape[0], 1), bos_id, dtype=torch.long)
    stream = torch.cat([bos, text_ids, image_ids + text_vocab_size], dim=1)  # [B, 1 + T + N]
    return stream[:, :-1], stream[:, 1:]


assert check_stream(my_stream)

text = torch.tensor([[7, 8, 0, 0]])  # a 2-word caption padded to T = 4
image = torch.tensor([[1, 2, 3, 0]])  # a 2x2 image
inputs, targets = my_stream(text, image, text_vocab_size=10, bos_id=14)
print("inputs: ", inputs.tolist())
print("targets:", targets.tolist())

# %% [markdown]
# Position 0 reads `bos` (14) and predicts the first word (7); position 2 reads the last word and predicts
# the first pad, the end of the caption; position 4 reads the last pad and predicts the first image token
# (1 + 10 = 11). The last image token (0 + 10 = 10) is only ever a target.
#
# ### Exercise 2: the text embedding, with one pad vector per position
#
# Look up every id at once (`token_table[text_ids]` is `[B, T, d]`), then, where the id is the pad, swap in
# the pad vector **of that position**: `pad_table[:T]` is `[T, d]` and broadcasts over the batch, so
# `torch.where` picks `pad_table[t]` for a pad at position `t`. The position embedding is added everywhere,
# pads included.

# %%
def my_text_embedding(text_ids: torch.Tensor, token_table: torch.Tensor, pad_table: torch.Tensor,
                      position_table: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    T = text_ids.shape[1]
    is_pad = (text_ids == pad_id).unsqueeze(-1)  # [B, T, 1]
    tokens = torch.where(is_pad, pad_table[:T], token_table[text_ids])  # [B, T, d]
    return tokens + position_table[:T]


assert check_text_embedding(my_text_embedding)

# %% [markdown]
# It is exactly what `DalleTransformer` feeds its first block at the caption positions (position 0 there
# is the start vector, so the caption's position embeddings are rows 1 to T of the model's table):

# %%
config = TransformerConfig(text_seq_len=6, text_vocab_size=30, image_vocab_size=16, image_grid=2,
                           d_model=8, n_layers=1, n_heads=2)
model = DalleTransformer(config, generator=torch.Generator().manual_seed(0)).eval()
captured = {}
model.blocks[0].register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
text = torch.tensor([[5, 9, 2, 0, 0, 0], [4, 4, 4, 4, 4, 4]])
with torch.no_grad():
    model(text, torch.zeros(2, 4, dtype=torch.long))
mine = my_text_embedding(text, model.text_emb.weight, model.pad_emb.weight, model.text_pos.embedding.weight[1:])
assert torch.allclose(mine, captured["x"][:, 1:7], atol=1e-6)
print("my_text_embedding == the model's caption positions:", True)

# %% [markdown]
# ### Exercise 3: the weighted loss
#
# `F.cross_entropy` wants logits `[n, vocab]` and targets `[n]`, so flatten the batch and position axes
# (`flatten(0, 1)`). It applies the log-softmax itself and averages over the `n` tokens by default: each
# term is then a mean over its own tokens, and the weights set the split between them whatever the
# numbers of tokens.

# %%
def my_dalle_loss(text_logits: torch.Tensor, image_logits: torch.Tensor, text_targets: torch.Tensor,
                  image_targets: torch.Tensor, text_weight: float = 1 / 8, image_weight: float = 7 / 8) -> torch.Tensor:
    text_loss = F.cross_entropy(text_logits.flatten(0, 1), text_targets.flatten())
    image_loss = F.cross_entropy(image_logits.flatten(0, 1), image_targets.flatten())
    return text_weight * text_loss + image_weight * image_loss


assert check_weighted_loss(my_dalle_loss)

with torch.no_grad():
    image = torch.tensor([[3, 1, 4, 1]])
    out = model(text[:1], image)
    mine = my_dalle_loss(out.text_logits, out.image_logits, text[:1], image)
assert torch.allclose(mine, out.loss, atol=1e-6)
print(f"my_dalle_loss == DalleTransformer's loss: {mine.item():.4f}")
