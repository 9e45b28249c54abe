import dataclasses
import json

import pytest
import torch

from dalle_lessons import checkpoints
from dalle_lessons.config import get_preset
from dalle_lessons.dvae import DiscreteVAE


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread (tests/conftest.py)


def tiny_model(**changes) -> DiscreteVAE:
    torch.manual_seed(0)
    return DiscreteVAE(dataclasses.replace(get_preset("tiny").dvae, **changes))


def test_round_trip_rebuilds_the_model_from_its_json(tmp_path):
    model = tiny_model()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors", extra={"seed": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temp files left
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["model_class"] == "dalle_lessons.dvae.DiscreteVAE" and meta["extra"] == {"seed": 3}
    assert meta["config"]["codebook_size"] == 64
    loaded = checkpoints.load(path)
    assert isinstance(loaded, DiscreteVAE) and loaded.config == model.config and not loaded.training
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.encode(images), model.encode(images))
    assert torch.equal(loaded.decode(model.encode(images)), model.eval().decode(model.encode(images)))


def test_weights_file_is_safetensors_not_pickle(tmp_path):
    model = tiny_model()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_length])  # the safetensors layout: a JSON header, then raw tensors
    assert "encoder.net.0.weight" in header
    assert b"\x80\x04" not in raw[:2]  # not a pickle stream


def test_loading_into_a_mismatched_model_names_the_fields_and_the_fix(tmp_path):
    model = tiny_model()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    other = tiny_model(codebook_size=32, likelihood="logit_laplace")
    with pytest.raises(ValueError) as error:
        checkpoints.load(path, other)
    message = str(error.value)
    assert "codebook_size: checkpoint 64, model 32" in message
    assert "likelihood: checkpoint 'mse', model 'logit_laplace'" in message
    assert "Fix:" in message and "checkpoints.load(path)" in message
    assert checkpoints.load(path, tiny_model()) is not None  # a matching model loads fine


def test_clear_errors_for_missing_files_and_bad_names(tmp_path):
    model = tiny_model()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.load(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        checkpoints.save(model, model.config, tmp_path / "m.pt")
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    (tmp_path / "m.json").unlink()
    with pytest.raises(FileNotFoundError, match="m.json is missing"):
        checkpoints.load(path)


def test_refuses_to_import_classes_from_outside_the_package(tmp_path):
    model = tiny_model()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["model_class"] = "os.system"
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="only dalle_lessons classes"):
        checkpoints.load(path)


def test_unknown_config_fields_are_a_clear_error(tmp_path):
    model = tiny_model()
    path = checkpoints.save(model, model.config, tmp_path / "m.safetensors")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["config"]["warp_drive"] = True
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"\['warp_drive'\].*update the package"):
        checkpoints.load(path)


def test_training_state_round_trip_keeps_optimizer_step_and_generators(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, 16, 16)).recon_loss.backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    torch.rand(4, generator=generator)  # move it off its seed
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 7,
             "rng": generator.get_state(), "history": [{"step": 7, "psnr": 12.5}], "note": None}
    path = checkpoints.save_state(tmp_path / "s.safetensors", state)
    loaded = checkpoints.load_state(path)
    assert loaded["step"] == 7 and loaded["history"] == [{"step": 7, "psnr": 12.5}] and loaded["note"] is None
    restored = torch.Generator().set_state(loaded["rng"])
    assert torch.equal(torch.rand(3, generator=restored), torch.rand(3, generator=generator))
    fresh = torch.optim.Adam(tiny_model().parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    for a, b in zip(fresh.state.values(), optimizer.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    with pytest.raises(TypeError, match="without pickle"):
        checkpoints.save_state(tmp_path / "bad.safetensors", {"thing": object()})


def test_the_shipped_dvae_loads_and_reconstructs_a_scene():
    from dalle_lessons.dvae import load_pretrained, psnr
    from dalle_lessons.shapes import ShapesDataset
    model = load_pretrained("dvae-cpu")
    assert model.config.codebook_size == 512 and model.config.quantizer == "gumbel"
    x = ShapesDataset("test", 4, preset="cpu", n_objects=1, cache=True).images_uint8().float() / 255
    ids = model.encode(x)
    assert ids.shape == (4, 8, 8) and psnr(model.decode(ids), x) > 28
    with pytest.raises(FileNotFoundError, match="train dvae --preset colab --quantizer vq"):
        load_pretrained("dvae-colab-vq")


def test_float16_storage_halves_the_file_and_loads_back_into_float32(tmp_path):
    from dalle_lessons.config import get_preset
    from dalle_lessons.transformer import DalleTransformer

    config = get_preset("tiny").transformer
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0))
    full = checkpoints.save(model, config, tmp_path / "full.safetensors")
    half = checkpoints.save(model, config, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    assert checkpoints.read_metadata(half)["stored_dtype"] == "float16"
    loaded = checkpoints.load(half)
    for name, value in loaded.state_dict().items():
        original = model.state_dict()[name]
        assert value.dtype == original.dtype
        assert torch.equal(value, original.half().to(original.dtype)) if original.is_floating_point() \
            else torch.equal(value, original)


def test_int8_storage_quarters_the_matrices_and_loads_back_within_half_a_step(tmp_path):
    from dalle_lessons.config import get_preset
    from dalle_lessons.transformer import DalleTransformer

    config = get_preset("tiny").transformer
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0))
    model.blocks[0].mlp.fc.weight.data[3] = 0.0  # an all-zero row must survive (no division by zero)
    half = checkpoints.save(model, config, tmp_path / "half.safetensors", dtype=torch.float16)
    small = checkpoints.save(model, config, tmp_path / "small.safetensors", dtype=torch.int8)
    assert small.stat().st_size < 0.6 * half.stat().st_size
    assert checkpoints.read_metadata(small)["stored_dtype"].startswith("int8")
    loaded = checkpoints.load(small)
    for name, value in loaded.state_dict().items():
        original = model.state_dict()[name]
        assert value.dtype == original.dtype and value.shape == original.shape
        if original.is_floating_point() and original.dim() >= 2:
            original = original.half().float()  # int8 is made from the float16-rounded weights
            step = original.flatten(1).abs().amax(1) / 127  # one quantization step per row
            error = (value - original).flatten(1).abs().amax(1)
            assert torch.all(error <= step / 2 + 1e-7), name
        elif original.is_floating_point():
            assert torch.equal(value, original.half().float())
        else:
            assert torch.equal(value, original)
    assert torch.equal(loaded.blocks[0].mlp.fc.weight[3], torch.zeros_like(model.blocks[0].mlp.fc.weight[3]))


def test_storing_weights_as_an_integer_type_other_than_int8_is_refused(tmp_path):
    from dalle_lessons.config import get_preset
    from dalle_lessons.transformer import DalleTransformer

    config = get_preset("tiny").transformer
    with pytest.raises(ValueError, match="torch.int8"):
        checkpoints.save(DalleTransformer(config), config, tmp_path / "x.safetensors", dtype=torch.int16)


def test_a_float16_checkpoint_converts_to_exactly_the_int8_file_of_the_float32_model(tmp_path):
    from safetensors.torch import load_file

    from dalle_lessons.config import get_preset
    from dalle_lessons.transformer import DalleTransformer

    config = get_preset("tiny").transformer
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0))
    direct = checkpoints.save(model, config, tmp_path / "direct.safetensors", dtype=torch.int8)
    half = checkpoints.save(model, config, tmp_path / "half.safetensors", dtype=torch.float16)
    converted = checkpoints.save(checkpoints.load(half), config, tmp_path / "converted.safetensors", dtype=torch.int8)
    a, b = load_file(str(direct)), load_file(str(converted))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
