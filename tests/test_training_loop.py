"""The shared training loop: when it validates and saves, stopping and resuming, Ctrl-C, refusals."""
import os
import signal
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytest

from dalle_lessons.config import get_preset
from dalle_lessons.training_loop import RunProgress, check_resumable, run_steps, run_summary

STATE = Path("run.state.safetensors")


class Recorder:
    """A fake trainer: each step returns its number; validation and saves are written down."""

    def __init__(self, progress: RunProgress, interrupt_at: int | None = None, fail_at: int | None = None):
        self.progress, self.saves, self.interrupt_at, self.fail_at = progress, [], interrupt_at, fail_at

    def one_step(self) -> int:
        number = self.progress.step + 1
        if number == self.fail_at:
            raise KeyboardInterrupt  # as if Ctrl-C were pressed twice, in the middle of the step
        if number == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # one Ctrl-C: held until the step is done
        return number

    def validate(self, result: int) -> dict:
        return {"result": result}

    def save_state(self) -> None:
        self.saves.append(self.progress.step)

    def run(self, total: int = 7, stop_at: int | None = None, messages: list | None = None) -> None:
        run_steps(self.progress, total, self.one_step, self.validate, self.save_state, eval_every=3,
                  checkpoint_every=2, state_path=STATE, stop_at=stop_at, show_progress=False,
                  write=(messages.append if messages is not None else print))


def test_validates_every_eval_every_steps_and_at_the_end_and_saves_every_checkpoint_every():
    recorder = Recorder(RunProgress())
    recorder.run()
    assert recorder.progress.step == 7
    assert [(row["step"], row["result"]) for row in recorder.progress.history] == [(3, 3), (6, 6), (7, 7)]
    assert all(row["seconds"] >= 0 for row in recorder.progress.history)
    assert recorder.saves == [2, 4, 6]  # not at the last step: the trainer writes the final model instead


def test_stopping_early_then_continuing_gives_the_same_history_as_one_run():
    straight = Recorder(RunProgress())
    straight.run()
    stopped = Recorder(RunProgress())
    stopped.run(stop_at=4)
    assert stopped.progress.step == 4
    assert run_summary("run", stopped.progress, 7, Path("run.safetensors"), STATE)["path"] == str(STATE)
    stopped.run()
    assert [r["step"] for r in stopped.progress.history] == [r["step"] for r in straight.progress.history]
    summary = run_summary("run", stopped.progress, 7, Path("run.safetensors"), STATE)
    assert summary["finished"] and summary["path"] == "run.safetensors" and summary["step"] == 7


def test_ctrl_c_waits_for_the_step_to_finish_then_saves_the_state():
    messages: list[str] = []
    recorder = Recorder(RunProgress(), interrupt_at=5)
    with pytest.raises(KeyboardInterrupt):
        recorder.run(messages=messages)
    assert recorder.progress.step == 5  # step 5 finished before the interruption took effect
    assert recorder.saves == [2, 4, 5]
    assert "interrupted at step 5" in messages[-1] and "--resume" in messages[-1]


def test_an_interruption_inside_a_step_saves_nothing_half_done():
    messages: list[str] = []
    recorder = Recorder(RunProgress(), fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        recorder.run(messages=messages)
    assert recorder.progress.step == 2 and recorder.saves == [2]
    assert "middle of a step" in messages[-1] and "keeps the last periodic state" in messages[-1]


@dataclass(frozen=True)
class Settings:
    steps: int = 10
    lr: float = 1e-3


def test_resuming_with_other_settings_a_seed_or_a_model_is_refused_with_the_reason():
    model = get_preset("tiny").transformer
    state = {"seed": 0, "model_config": asdict(model)}
    check_resumable(STATE, state, Settings(), Settings(), 0, model)  # the same run: fine
    with pytest.raises(ValueError, match=r"different settings \(lr\).*--resume"):
        check_resumable(STATE, state, Settings(), Settings(lr=2e-3), 0, model)
    with pytest.raises(ValueError, match=r"seed 0 and different settings \(seed\)"):
        check_resumable(STATE, state, Settings(), Settings(), 1, model)
    with pytest.raises(ValueError, match="model config differs.*d_model"):
        check_resumable(STATE, state, Settings(), Settings(), 0, replace(model, d_model=2 * model.d_model))
