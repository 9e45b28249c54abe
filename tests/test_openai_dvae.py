"""OpenAI's released dVAE (openai_dvae.py): the same parameter names and outputs as the `dall_e` package, and
the one-time converter from OpenAI's pickles to safetensors with its refusals.

The comparisons with `dall_e` skip where it is not installed (`pip install --no-deps dall-e==0.1`: its declared
dependencies pull another torch build; it imports only attrs, numpy, requests and torch). The converter's tests
run without it, on pickles of this package's own modules."""
import sys

import pytest
import torch
import torch.nn.functional as F

from dalle_lessons import openai_dvae as od
from dalle_lessons.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(n_hid=64, n_blk_per_group=1, vocab_size=512)  # the smallest sizes dall_e's validators accept
NO_DALL_E = "the dall-e package is not installed (pip install --no-deps dall-e==0.1)"


def _dall_e():
    return pytest.importorskip("dall_e", reason=NO_DALL_E)


def _one_hot(ids, vocab):
    return F.one_hot(ids, vocab).permute(0, 3, 1, 2).float()


def test_state_dict_keys_and_shapes_are_the_published_ones():
    dall_e = _dall_e()
    with torch.device("meta"):
        pairs = [(dall_e.Encoder(device=torch.device("meta")), od.OpenAIEncoder()),
                 (dall_e.Decoder(device=torch.device("meta")), od.OpenAIDecoder())]
    for theirs, ours in pairs:
        a, b = theirs.state_dict(), ours.state_dict()
        assert list(a) == list(b)
        assert all(a[k].shape == b[k].shape for k in a)
    assert sum(p.numel() for p in pairs[0][1].parameters()) == 53_786_240
    assert sum(p.numel() for p in pairs[1][1].parameters()) == 43_829_766


@pytest.mark.parametrize("sizes, side, batch", [(SMALL, 64, 2), ({}, 64, 1)], ids=["small", "published"])
def test_same_outputs_as_dall_e_on_the_same_random_weights(sizes, side, batch):
    """The published sizes run on 64 x 64 images here (all 98 M parameters, a sixteenth of the work of 256 x 256,
    which takes ~10 s per half on one thread; benchmarks/README.md gives that run's figures)."""
    dall_e = _dall_e()
    torch.manual_seed(0)
    config = od.OpenAIDVAEConfig(**sizes, n_init=16 if sizes else 128)
    theirs_enc, theirs_dec = dall_e.Encoder(**sizes), dall_e.Decoder(**sizes, n_init=config.n_init)
    enc, dec = od.OpenAIEncoder(config), od.OpenAIDecoder(config)
    enc.load_state_dict(theirs_enc.state_dict())
    dec.load_state_dict(theirs_dec.state_dict())

    images = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
    assert torch.equal(od.map_pixels(images), dall_e.map_pixels(images))
    with torch.no_grad():
        logits = theirs_enc(dall_e.map_pixels(images))
        assert (enc(od.map_pixels(images)) - logits).abs().max() <= 1e-5
        ids = enc.encode(images)
        assert ids.shape == (batch, side // 8, side // 8) and torch.equal(ids, logits.argmax(1))

        stats = theirs_dec(_one_hot(ids, config.vocab_size))
        assert (dec(_one_hot(ids, config.vocab_size)) - stats).abs().max() <= 1e-5
        reference = dall_e.unmap_pixels(torch.sigmoid(stats[:, :3]))
        assert (dec.decode(ids) - reference).abs().max() <= 1e-5  # the lookup path = the one-hot convolution
        assert torch.equal(od.unmap_pixels(stats[:, :3]), dall_e.unmap_pixels(stats[:, :3]))


def _pickles(tmp_path, dall_e=None):
    """encoder.pkl and decoder.pkl as OpenAI ships them: torch.save of whole modules (dall_e's when given)."""
    torch.manual_seed(0)
    if dall_e is not None:
        encoder, decoder = dall_e.Encoder(**SMALL), dall_e.Decoder(**SMALL, n_init=16)
    else:
        config = od.OpenAIDVAEConfig(**SMALL, n_init=16)
        encoder, decoder = od.OpenAIEncoder(config), od.OpenAIDecoder(config)
    paths = tmp_path / "encoder.pkl", tmp_path / "decoder.pkl"
    torch.save(encoder, paths[0])
    torch.save(decoder, paths[1])
    return encoder.eval(), decoder.eval(), paths


def test_converter_round_trip_from_dall_e_pickles(tmp_path, monkeypatch):
    dall_e = _dall_e()
    encoder, decoder, (enc_pkl, dec_pkl) = _pickles(tmp_path, dall_e)
    for name in ("dall_e", "dall_e.encoder", "dall_e.decoder", "dall_e.utils"):
        monkeypatch.setitem(sys.modules, name, None)  # the converter must not need (or run) dall_e's code
    written = od.convert(enc_pkl, dec_pkl, tmp_path / "out", i_understand_pickle=True)
    assert written["parameters"] == {"encoder": 1_321_744, "decoder": 1_411_558}
    model = od.load(tmp_path / "out")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = encoder(od.map_pixels(images))
        assert (model.encoder(od.map_pixels(images)) - logits).abs().max() <= 1e-5
        ids = logits.argmax(1)
        expected = od.unmap_pixels(torch.sigmoid(decoder(_one_hot(ids, 512))[:, :3]))
    assert torch.equal(model.encode(images), ids)
    assert (model.decode(ids) - expected).abs().max() <= 1e-5
    assert model.reconstruct(images).shape == images.shape


def test_cli_converts_with_consent_and_refuses_without(tmp_path, capsys):
    _, _, (enc_pkl, dec_pkl) = _pickles(tmp_path)
    out = tmp_path / "out"
    args = ["convert-openai-dvae", "--encoder", str(enc_pkl), "--decoder", str(dec_pkl), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--i-understand-pickle" in err and "runs the code it names" in err
    assert not out.exists()  # refused before anything was opened or written
    assert main(args + ["--i-understand-pickle"]) == 0
    assert "openai-dvae-encoder.safetensors" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"openai-dvae-encoder.safetensors", "openai-dvae-encoder.json",
                                              "openai-dvae-decoder.safetensors", "openai-dvae-decoder.json"}


@pytest.mark.parametrize("case, message", [
    ("missing", "no encoder file at"),
    ("text", "is not a PyTorch pickle"),
    ("empty", "is empty"),
    ("wrong pickle", "holds a dict, not OpenAI's dVAE encoder"),
    ("other module", "without the parameters of OpenAI's dVAE encoder"),
    ("swapped", "holds OpenAI's dVAE decoder, given as the encoder: swap the two files"),
    ("same file", "are the same file"),
    ("safetensors", "is a safetensors file (already converted?)"),
])
def test_converter_refuses_the_wrong_files_in_one_line(tmp_path, capsys, case, message):
    _, _, (enc_pkl, dec_pkl) = _pickles(tmp_path)
    bad = tmp_path / "bad.pkl"
    encoder = {"missing": tmp_path / "nope.pkl", "swapped": dec_pkl, "same file": dec_pkl}.get(case, bad)
    if case == "text":
        bad.write_text("<html>404 Not Found</html>")
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "wrong pickle":
        torch.save({"step": 3}, bad)
    elif case == "other module":
        torch.save(torch.nn.Linear(2, 2), bad)
    elif case == "safetensors":
        od.convert(enc_pkl, dec_pkl, tmp_path / "done", i_understand_pickle=True)
        encoder = tmp_path / "done" / "openai-dvae-encoder.safetensors"
    decoder = enc_pkl if case == "swapped" else dec_pkl
    assert main(["convert-openai-dvae", "--encoder", str(encoder), "--decoder", str(decoder),
                 "--out", str(tmp_path / "out"), "--i-understand-pickle"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "openai-dvae-encoder.safetensors").exists()


def test_api_refuses_without_consent_and_load_names_the_command(tmp_path):
    _, _, (enc_pkl, _) = _pickles(tmp_path)
    with pytest.raises(PermissionError, match="pickle"):
        od.read_openai_pickle(enc_pkl, "encoder")
    with pytest.raises(FileNotFoundError, match="convert-openai-dvae"):
        od.load(tmp_path / "empty")


def test_bad_images_and_ids_are_clear_errors():
    config = od.OpenAIDVAEConfig(**SMALL, n_init=16)
    enc, dec = od.OpenAIEncoder(config), od.OpenAIDecoder(config)
    for images, message in [(torch.rand(1, 3, 30, 30), "multiples of 8"), (torch.rand(3, 32, 32), r"\[B, 3, H, W\]"),
                            (torch.full((1, 3, 8, 8), 255.0), r"\[0, 1\]"),
                            (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "divide uint8 pixels by 255")]:
        with pytest.raises(ValueError, match=message):
            enc.encode(images)
    with pytest.raises(ValueError, match=r"\[0, 512\)"):
        dec.decode(torch.full((1, 4, 4), 512))
    with pytest.raises(ValueError, match=r"\[B, h, w\]"):
        dec.decode(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of 4"):
        od.OpenAIDVAEConfig(n_hid=66)
