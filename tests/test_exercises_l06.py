"""Lesson 06's self-checks: right answers pass, wrong or unfinished ones fail with a useful message, and
neither the library's functions nor the ones the lesson shows pass them."""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from dalle_lessons.config import TransformerConfig
from dalle_lessons.exercises.l06_transformer import (check_one_pad_losses, check_packed_stream, check_shuffle_words,
                                                     one_pad_losses_reference)
from dalle_lessons.train_dalle import TokenData, validate
from dalle_lessons.transformer import DalleTransformer, drop_captions
from exercise_helpers import assert_fails, not_attempted


def assert_passes(check, fn, capsys):
    assert check(fn) is True, capsys.readouterr().out
    assert "correct ✓" in capsys.readouterr().out


# --- exercise 1: a stream with a start-of-image token ---------------------------------------------

def packed(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id):
    return [torch.cat([torch.tensor([bos_id]), t[t != pad_id], torch.tensor([soi_id]), i + text_vocab_size])
            for t, i in zip(text_ids, image_ids)]


def packed_lists(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id):
    """Built from Python lists, the caption cut at its first pad."""
    streams = []
    for text, image in zip(text_ids.tolist(), image_ids.tolist()):
        n = text.index(pad_id) if pad_id in text else len(text)
        streams.append(torch.tensor([bos_id, *text[:n], soi_id, *(v + text_vocab_size for v in image)]))
    return tuple(streams)


@pytest.mark.parametrize("right", [packed, packed_lists])
def test_packed_stream_right_answers(capsys, right):
    assert_passes(check_packed_stream, right, capsys)


def test_packed_stream_not_attempted(capsys):
    assert_fails(check_packed_stream, not_attempted, capsys, "not attempted")


def _rows(build):
    """A packed_stream built row by row from build(bos, text, words, soi, image, vocab)."""
    def fn(text_ids, image_ids, v, p, b, s):
        return [torch.cat(build(torch.tensor([b]), t, t[t != p], torch.tensor([s]), i, v))
                for t, i in zip(text_ids, image_ids)]
    return fn


def course_layout(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id):
    """The course's own stream (section 1, the package's layout): [bos | padded caption | image]."""
    bos = torch.full((len(text_ids), 1), bos_id)
    return torch.cat([bos, text_ids, image_ids + text_vocab_size], dim=1)


def one_vocabulary_stream(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id):
    """The previous version of this exercise: (inputs, targets) of the padded one-vocabulary stream."""
    stream = course_layout(text_ids, image_ids, text_vocab_size, pad_id, bos_id, soi_id)
    return stream[:, :-1], stream[:, 1:]


@pytest.mark.parametrize("wrong, phrase", [
    (course_layout, "the course's own layout"),
    (one_vocabulary_stream, "like (inputs, targets) of a padded stream"),
    (lambda *args: packed(*args)[:2], "should return a list of 3 streams"),
    (_rows(lambda b, t, w, s, i, v: [b, t, s, i + v]), "you kept the pads"),
    (_rows(lambda b, t, w, s, i, v: [b, w, i + v]), "start-of-image token is missing"),
    (_rows(lambda b, t, w, s, i, v: [w, s, i + v]), "start token is missing"),
    (_rows(lambda b, t, w, s, i, v: [b, w, s, i]), "image ids are not shifted"),
    (_rows(lambda b, t, w, s, i, v: [s, w, b, i + v]), "are swapped"),
    (_rows(lambda b, t, w, s, i, v: [b, w, i + v, s]), "not after it"),
    (_rows(lambda b, t, w, s, i, v: [b, t[t != 0], s, i + v]), "the pad is pad_id (here 3)"),
    (_rows(lambda b, t, w, s, i, v: [b, w, s, (i + v)[:-1]]), "the last image token is missing"),
    (_rows(lambda b, t, w, s, i, v: [b, w, s, i + v + 1]), "position"),
    (_rows(lambda b, t, w, s, i, v: [b, w, w[:1], s, i + v]), "expected"),
    (lambda *args: pad_sequence(packed(*args), batch_first=True), "returned one tensor"),
    (lambda *args: [s.tolist() for s in packed(*args)], "make each stream a 1-D torch.Tensor"),
    (lambda *args: [s.float() for s in packed(*args)], "must be integers"),
    (lambda *args: [s[None] for s in packed(*args)], "each stream is 1-D"),
    (lambda t, i, v, p, b, s: torch.cat([t, i]), "raised RuntimeError"),
])
def test_packed_stream_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_packed_stream, wrong, capsys, phrase)


def test_packed_stream_moves_the_image_with_the_caption():
    """The point of the exercise: without pads the first image token's index depends on the caption."""
    text = torch.tensor([[5, 6, 0, 0], [5, 6, 7, 8]])
    streams = packed(text, torch.tensor([[1, 2], [3, 4]]), 10, 0, 20, 21)
    assert [s.tolist() for s in streams] == [[20, 5, 6, 21, 11, 12], [20, 5, 6, 7, 8, 21, 13, 14]]


# --- exercise 2 (experiment): one pad vector for every position -----------------------------------

def one_pad_copy(model, text_ids, image_ids):
    shared = copy.deepcopy(model)
    with torch.no_grad():
        shared.pad_emb.weight[:] = model.pad_emb.weight.mean(0)
        out = shared(text_ids, image_ids)
    return out.text_loss.item(), out.image_loss.item()


def one_pad_restored(model, text_ids, image_ids):
    """Changes the model in place and puts its pads back afterwards; returns tensors."""
    saved = model.pad_emb.weight.detach().clone()
    try:
        with torch.no_grad():
            model.pad_emb.weight.copy_(saved.mean(0, keepdim=True).expand_as(saved))
            out = model(text_ids, image_ids)
    finally:
        with torch.no_grad():
            model.pad_emb.weight.copy_(saved)
    return [out.text_loss, out.image_loss]


@pytest.mark.parametrize("right", [one_pad_copy, one_pad_restored])
def test_one_pad_right_answers(capsys, right):
    assert_passes(check_one_pad_losses, right, capsys)


def test_one_pad_not_attempted(capsys):
    assert_fails(check_one_pad_losses, not_attempted, capsys, "not attempted")


def _with_pads(make_pads):
    """One-pad losses with the pad table replaced by make_pads(model) instead of the mean."""
    def fn(model, text_ids, image_ids):
        other = copy.deepcopy(model)
        with torch.no_grad():
            other.pad_emb.weight[:] = make_pads(model)
            out = other(text_ids, image_ids)
        return out.text_loss.item(), out.image_loss.item()
    return fn


def in_place(model, text_ids, image_ids):
    with torch.no_grad():
        model.pad_emb.weight[:] = model.pad_emb.weight.mean(0)
        out = model(text_ids, image_ids)
    return out.text_loss.item(), out.image_loss.item()


@pytest.mark.parametrize("wrong, phrase", [
    (lambda m, t, i: (m(t, i).text_loss, m(t, i).image_loss), "these are the model's own losses"),
    (lambda m, t, i: tuple(validate(m, TokenData(t, i)).values())[:2], "these are the model's own losses"),
    (lambda m, t, i: validate(m, TokenData(t, i)), "returned a dict"),
    (_with_pads(lambda m: m.pad_emb.weight[0]), "every position got pad vector 0"),
    (_with_pads(lambda m: m.pad_emb.weight[-1]), "the last pad vector"),
    (_with_pads(lambda m: 0.0), "set the pad vectors to zero"),
    (_with_pads(lambda m: m.text_emb.weight[m.config.pad_id]), "token embedding of the pad id"),
    (_with_pads(lambda m: m.pad_emb.weight.mean(1, keepdim=True)), "did you average over axis 1"),
    (lambda m, t, i: one_pad_copy(m, t, i)[::-1], "swapped"),
    (in_place, "changed the model it was given"),
    (lambda m, t, i: (0.68, 0.156), "expected"),  # the notebook's numbers, hard-coded
    (lambda m, t, i: one_pad_copy(m, t, i)[1], "should return two numbers"),
    (lambda m, t, i: (m(t, i).text_logits, m(t, i).image_logits), "of shape"),
    (lambda m, t, i: m(t), "raised TypeError"),
])
def test_one_pad_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_one_pad_losses, wrong, capsys, phrase)


def test_one_pad_reference_changes_only_the_pads():
    """Captions with no pads keep the model's own losses; the reference never touches the model."""
    config = TransformerConfig(text_seq_len=4, text_vocab_size=20, image_vocab_size=8, image_grid=2,
                               d_model=8, n_layers=1, n_heads=2)
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0)).eval()
    before = copy.deepcopy(model.state_dict())
    text, image = torch.tensor([[3, 4, 5, 6]]), torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        out = model(text, image)
    assert one_pad_losses_reference(model, text, image) == pytest.approx((out.text_loss.item(), out.image_loss.item()))
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


# --- exercise 3 (experiment): shuffle each caption's words ----------------------------------------

def shuffle_loop(text_ids, pad_id, generator):
    out = text_ids.clone()
    for row in range(len(out)):
        n = int((text_ids[row] != pad_id).sum())
        out[row, :n] = text_ids[row, torch.randperm(n, generator=generator)]
    return out


def shuffle_sorted_keys(text_ids, pad_id, generator):
    """Vectorised: random keys for the words, keys above 1 for the pads (which stay at the end)."""
    keys = torch.rand(text_ids.shape, generator=generator).masked_fill(text_ids == pad_id, 2.0)
    return text_ids.gather(1, keys.argsort(1))


@pytest.mark.parametrize("right", [shuffle_loop, shuffle_sorted_keys])
def test_shuffle_right_answers(capsys, right):
    assert_passes(check_shuffle_words, right, capsys)


def test_shuffle_not_attempted(capsys):
    assert_fails(check_shuffle_words, not_attempted, capsys, "not attempted")


def _per_row(reorder):
    """Each caption's n words reordered by reorder(n, generator) -> index tensor."""
    def fn(text_ids, pad_id, generator):
        out = text_ids.clone()
        for row in range(len(out)):
            n = int((text_ids[row] != pad_id).sum())
            out[row, :n] = text_ids[row, reorder(n, generator)]
        return out
    return fn


def one_order_for_the_batch(text_ids, pad_id, generator):
    order = torch.randperm(text_ids.shape[1], generator=generator)
    out = text_ids.clone()
    for row in range(len(out)):
        n = int((text_ids[row] != pad_id).sum())
        out[row, :n] = text_ids[row, order[order < n]]
    return out


def shuffled_in_place(text_ids, pad_id, generator):
    for row in range(len(text_ids)):
        n = int((text_ids[row] != pad_id).sum())
        text_ids[row, :n] = text_ids[row, torch.randperm(n, generator=generator)]
    return text_ids


@pytest.mark.parametrize("wrong, phrase", [
    (lambda t, p, g: t.clone(), "nothing moved"),
    (lambda t, p, g: drop_captions(t, 1.0, p, g), "drop_captions"),
    (lambda t, p, g: drop_captions(t, 0.5, p, torch.Generator().manual_seed(1)), "came back empty"),
    (lambda t, p, g: t.roll(1, dims=0), "between pairs"),  # section 7's 'another pair's caption'
    (lambda t, p, g: t[torch.randperm(len(t), generator=g)], "between pairs"),
    (lambda t, p, g: t.flip(1), "the pads moved"),
    (lambda t, p, g: t[:, torch.randperm(t.shape[1], generator=g)], "the pads moved"),
    (_per_row(lambda n, g: torch.arange(n - 1, -1, -1)), "all came back in the same order"),  # reversed words
    (one_order_for_the_batch, "all came back in the same order"),
    (_per_row(lambda n, g: (torch.arange(n) + int(torch.randint(n, (1,), generator=g)) if n else torch.arange(0)) % max(n, 1)),
     "A rotation or a swap"),
    (_per_row(lambda n, g: torch.randperm(n)), "seeded alike"),  # the global random generator
    (shuffled_in_place, "in place"),
    (lambda t, p, g: torch.where(t == p, t, t + 1), "the words changed"),
    (lambda t, p, g: shuffle_loop(t, p, g).tolist(), "should return a torch.Tensor"),
    (lambda t, p, g: shuffle_loop(t, p, g).float(), "must stay integers"),
    (lambda t, p, g: shuffle_loop(t, p, g)[:, :-1], "returned shape"),
    (lambda t, p, g: t.shuffle(), "raised AttributeError"),
])
def test_shuffle_wrong_answers(capsys, wrong, phrase):
    assert_fails(check_shuffle_words, wrong, capsys, phrase)
