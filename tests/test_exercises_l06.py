"""Lesson 06's self-checks: right answers pass, wrong or unfinished ones fail with a useful message."""
import pytest
import torch
import torch.nn.functional as F

from dalle_lessons.config import TransformerConfig
from dalle_lessons.exercises.l06_transformer import (check_stream, check_text_embedding, check_weighted_loss,
                                                     reference_loss, reference_text_embedding)
from dalle_lessons.transformer import DalleTransformer
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: the stream, its inputs and targets -----------------------------------------------

def stream(text_ids, image_ids, text_vocab_size, bos_id):
    bos = torch.full((text_ids.shape[0], 1), bos_id)
    s = torch.cat([bos, text_ids, image_ids + text_vocab_size], dim=1)
    return s[:, :-1], s[:, 1:]


def stream_written_out(text_ids, image_ids, text_vocab_size, bos_id):
    """Inputs and targets built separately, as a list comprehension might."""
    B = text_ids.shape[0]
    inputs = torch.cat([torch.full((B, 1), bos_id), text_ids, image_ids[:, :-1] + text_vocab_size], 1)
    targets = torch.cat([text_ids, image_ids + text_vocab_size], 1)
    return [inputs, targets]


@pytest.mark.parametrize("right", [stream, stream_written_out])
def test_stream_right_answers(capsys, right):
    assert_passes(check_stream, right, capsys)


def test_stream_not_attempted(capsys):
    assert_fails(check_stream, not_attempted, capsys, "not attempted")


def _whole(text_ids, image_ids, text_vocab_size, bos_id):
    return torch.cat([torch.full((text_ids.shape[0], 1), bos_id), text_ids, image_ids + text_vocab_size], 1)


@pytest.mark.parametrize("wrong, phrase", [
    (lambda t, i, v, b: stream(t, i, v, b)[::-1], "inputs and targets are swapped"),
    (lambda t, i, v, b: stream(t, i - v, v, b), "image ids are not shifted"),
    (lambda t, i, v, b: (stream(t, i, v, b)[0],) * 2, "are the same"),
    (lambda t, i, v, b: (stream(t, i, v, 0)[0], stream(t, i, v, b)[1]), "inputs[:, 0] should be bos_id"),
    (lambda t, i, v, b: (stream(t, i, v, b)[0], stream(t, i + 1, v, b)[1]), "check the image part of the targets"),
    (lambda t, i, v, b: (_whole(t, i, v, b),) * 2, "that is the whole stream"),
    (lambda t, i, v, b: (torch.cat([t, i + v], 1)[:, :-1], torch.cat([t, i + v], 1)[:, 1:]), "leave out the <bos>"),
    (lambda t, i, v, b: (t, i), "should be"),
    (lambda t, i, v, b: stream(t, i, v, b)[0], "should return two tensors"),
    (lambda t, i, v, b: tuple(x.float() for x in stream(t, i, v, b)), "must be integers"),
    (lambda t, i, v, b: (stream(t, i, v, b)[0], stream(t, i, v, b)[1].tolist()), "should return a torch.Tensor"),
    (lambda t, i, v, b: torch.cat([t, i]), "raised RuntimeError"),
    (lambda t, i, v, b: (stream(t, i, v, b)[0] * (torch.arange(t.shape[1] + i.shape[1]) != 3),
                         stream(t, i, v, b)[1]), "inputs[0, 3] should be"),
])
def test_stream_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_stream, wrong, capsys, phrase)


def test_stream_matches_what_the_model_predicts():
    """The reference's targets are the model's: text targets = text ids, image targets = image ids (+ offset)."""
    text, image = torch.tensor([[5, 6, 0]]), torch.tensor([[1, 2, 3, 0]])
    inputs, targets = stream(text, image, 10, 99)
    assert inputs.tolist() == [[99, 5, 6, 0, 11, 12, 13]]
    assert targets.tolist() == [[5, 6, 0, 11, 12, 13, 10]]


# --- exercise 2: the text embedding -----------------------------------------------------------------

def text_embedding(text_ids, token_table, pad_table, position_table, pad_id=0):
    T = text_ids.shape[1]
    is_pad = (text_ids == pad_id).unsqueeze(-1)
    return torch.where(is_pad, pad_table[:T], token_table[text_ids]) + position_table[:T]


def text_embedding_loops(text_ids, token_table, pad_table, position_table, pad_id=0):
    B, T = text_ids.shape
    out = torch.empty(B, T, token_table.shape[1])
    for b in range(B):
        for t in range(T):
            i = int(text_ids[b, t])
            out[b, t] = (pad_table[t] if i == pad_id else token_table[i]) + position_table[t]
    return out


def text_embedding_with_f_embedding(text_ids, token_table, pad_table, position_table, pad_id=0):
    T = text_ids.shape[1]
    tokens = F.embedding(text_ids, token_table)
    mask = (text_ids == pad_id).float().unsqueeze(-1)
    return tokens * (1 - mask) + pad_table[:T] * mask + position_table[:T]


@pytest.mark.parametrize("right", [text_embedding, text_embedding_loops, text_embedding_with_f_embedding])
def test_text_embedding_right_answers(capsys, right):
    assert_passes(check_text_embedding, right, capsys)


def test_text_embedding_not_attempted(capsys):
    assert_fails(check_text_embedding, not_attempted, capsys, "not attempted")


def _mixed(text_ids, token_table, pads, pad_id):
    return torch.where((text_ids == pad_id).unsqueeze(-1), pads, token_table[text_ids])


@pytest.mark.parametrize("wrong, phrase", [
    (lambda ids, tok, pad, pos, p=0: _mixed(ids, tok, pad[0], p) + pos[:ids.shape[1]], "the same vector, pad_table[0]"),
    (lambda ids, tok, pad, pos, p=0: _mixed(ids, tok, pad[((ids == p).cumsum(1) - 1).clamp(min=0)], p)
     + pos[:ids.shape[1]], "numbered the pads from the end of the caption"),
    (lambda ids, tok, pad, pos, p=0: tok[ids] + pos[:ids.shape[1]], "token_table[pad_id], like any token"),
    (lambda ids, tok, pad, pos, p=0: tok[ids] + (ids == p).unsqueeze(-1) * pad[:ids.shape[1]] + pos[:ids.shape[1]],
     "replaces the token embedding"),
    (lambda ids, tok, pad, pos, p=0: (pad[:ids.shape[1]] + pos[:ids.shape[1]]).expand(*ids.shape, -1),
     "at every position"),
    (lambda ids, tok, pad, pos, p=0: _mixed(ids, tok, pad[:ids.shape[1]], p), "left out the position embedding"),
    (lambda ids, tok, pad, pos, p=0: _mixed(ids, tok, pad[:ids.shape[1]], p)
     + (ids != p).unsqueeze(-1) * pos[:ids.shape[1]], "pads have no position embedding"),
    (lambda ids, tok, pad, pos, p=0: text_embedding(ids, tok, pad, pos, 0), "compare text_ids with the pad_id"),
    (lambda ids, tok, pad, pos, p=0: text_embedding(ids, tok, pad, pos, p)[:, 0], "one d-sized vector"),
    (lambda ids, tok, pad, pos, p=0: text_embedding(ids, tok, pad, pos, p).tolist(), "should return a torch.Tensor"),
    (lambda ids, tok, pad, pos, p=0: tok[ids] + pos[:, None], "raised RuntimeError"),
    (lambda ids, tok, pad, pos, p=0: text_embedding(ids, tok, pad, pos, p) + 0.5, "is off by up to 0.500"),
])
def test_text_embedding_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_text_embedding, wrong, capsys, phrase)


def test_text_embedding_reference_matches_the_model():
    """The checked formula is the model's: its caption positions hold exactly this sum."""
    config = TransformerConfig(text_seq_len=5, text_vocab_size=20, image_vocab_size=8, image_grid=2,
                               d_model=8, n_layers=1, n_heads=2)
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0)).eval()
    captured = {}
    model.blocks[0].register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
    text = torch.tensor([[4, 7, 0, 0, 0], [3, 3, 3, 3, 9]])
    model(text, torch.zeros(2, 4, dtype=torch.long))
    want = reference_text_embedding(text, model.text_emb.weight, model.pad_emb.weight,
                                    model.text_pos.embedding.weight[1:], config.pad_id)
    assert torch.allclose(captured["x"][:, 1:6], want, atol=1e-6)


# --- exercise 3: the weighted loss ------------------------------------------------------------------

def weighted_loss(text_logits, image_logits, text_targets, image_targets, text_weight=1 / 8, image_weight=7 / 8):
    text = F.cross_entropy(text_logits.flatten(0, 1), text_targets.flatten())
    image = F.cross_entropy(image_logits.flatten(0, 1), image_targets.flatten())
    return text_weight * text + image_weight * image


def weighted_loss_by_hand(text_logits, image_logits, text_targets, image_targets, text_weight=1 / 8,
                          image_weight=7 / 8):
    def nll(logits, targets):
        return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).mean()
    return text_weight * nll(text_logits, text_targets) + image_weight * nll(image_logits, image_targets)


def weighted_loss_transposed(text_logits, image_logits, text_targets, image_targets, text_weight=1 / 8,
                             image_weight=7 / 8):
    """cross_entropy with the class axis second, [B, V, n]: the same numbers."""
    return (text_weight * F.cross_entropy(text_logits.transpose(1, 2), text_targets)
            + image_weight * F.cross_entropy(image_logits.transpose(1, 2), image_targets)).reshape(1)


@pytest.mark.parametrize("right", [weighted_loss, weighted_loss_by_hand, weighted_loss_transposed])
def test_weighted_loss_right_answers(capsys, right):
    assert_passes(check_weighted_loss, right, capsys)


def test_weighted_loss_not_attempted(capsys):
    assert_fails(check_weighted_loss, not_attempted, capsys, "not attempted")


def _ce(logits, targets, reduction="mean"):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)


@pytest.mark.parametrize("wrong, phrase", [
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: torch.cat([_ce(tl, tt, "none"), _ce(il, it, "none")]).mean(),
     "one mean over all the tokens"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: wi * _ce(tl, tt) + wt * _ce(il, it), "weights are swapped"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: _ce(tl, tt) + _ce(il, it), "without their weights"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: (_ce(tl, tt) + _ce(il, it)) / 2, "averaged the two"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: _ce(il, it), "only the image term"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: _ce(tl, tt) / 8 + 7 * _ce(il, it) / 8, "wrote the weights 1/8"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: wt * _ce(tl, tt, "sum") + wi * _ce(il, it, "sum"),
     "summed the cross-entropy"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: wt * _ce(tl, tt, "sum") / len(tl) + wi * _ce(il, it, "sum") / len(il),
     "averaged over the batch"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: -(wt * tl.gather(-1, tt[..., None]).mean()
                                                 + wi * il.gather(-1, it[..., None]).mean()), "raw logit"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: wt * _ce(tl.softmax(-1), tt) + wi * _ce(il.softmax(-1), it),
     "applied a softmax before"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: weighted_loss(tl, il, tt, it, wt, wi).item(), "Python float"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: weighted_loss(tl, il, tt, it, wt, wi).detach(), "carry gradients"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: F.cross_entropy(tl, tt), "flatten the batch and position axes"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: torch.stack([wt * _ce(tl, tt), wi * _ce(il, it)]), "scalar tensor"),
    (lambda tl, il, tt, it, wt=1 / 8, wi=7 / 8: weighted_loss(tl, il, tt, it, wt, wi) + 0.1, "expected"),
])
def test_weighted_loss_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_weighted_loss, wrong, capsys, phrase)


def test_weighted_loss_reference_matches_the_model():
    config = TransformerConfig(text_seq_len=5, text_vocab_size=20, image_vocab_size=8, image_grid=2,
                               d_model=8, n_layers=1, n_heads=2)
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0)).eval()
    text, image = torch.tensor([[4, 7, 0, 0, 0]]), torch.tensor([[1, 5, 2, 7]])
    out = model(text, image)
    assert torch.allclose(reference_loss(out.text_logits, out.image_logits, text, image), out.loss, atol=1e-6)
