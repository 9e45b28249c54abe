"""Fixtures shared by the test files."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Small models run as fast on one thread, and a second thread crawls when others share the CPU.
    A test file opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dvae(tmp_path_factory) -> str:
    """A seeded, untrained tiny dVAE checkpoint: its argmax codes are arbitrary but deterministic tokens
    (what the transformer-training tests train on)."""
    from dalle_lessons import checkpoints
    from dalle_lessons.config import get_preset
    from dalle_lessons.dvae import DiscreteVAE
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dvae") / "dvae-tiny.safetensors"
    checkpoints.save(DiscreteVAE(get_preset("tiny").dvae), get_preset("tiny").dvae, path)
    return str(path)
