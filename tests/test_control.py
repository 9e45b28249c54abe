"""Control (lesson 09): confusion headlines and under-specified captions (dalle_lessons/control.py)."""
from __future__ import annotations

import json

import pytest
from test_evaluate_generation import tiny_pipeline

from dalle_lessons import control

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def report():
    return control.evaluate_control(tiny_pipeline(), n_captions=4, samples=2, underspecified_samples=2)


def test_attribute_accuracy_reads_the_diagonal_and_the_worst_mistake():
    confusion = {"labels": ["small", "large"], "counts": [[6, 3, 1], [0, 10, 0]]}
    headline = control.attribute_accuracy(confusion)
    assert headline["accuracy"] == pytest.approx(80.0) and headline["images"] == 20
    assert headline["top_confusion"] == ("small", "large", pytest.approx(30.0))
    assert control.attribute_accuracy({"labels": ["a"], "counts": [[0, 0]]})["accuracy"] is None
    counts = {"labels": [1, 2], "counts": [[9, 0, 1], [0, 10, 0]]}  # one image of "one object" held three
    assert control.attribute_accuracy(counts, "count")["top_confusion"] == (1, "another count", pytest.approx(10.0))


def test_total_variation():
    assert control.total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert control.total_variation({"a": 1.0}, {"b": 1.0}) == 1
    assert control.total_variation({"a": 0.7, "b": 0.3}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.2)


def test_unsaid_attributes_are_spread_evenly_in_training():
    """The world draws size, cell and background evenly and captions omit them at random: so a caption that
    leaves one unsaid asks for the even spread."""
    training = control.training_unsaid_distribution(3000)
    assert set(training) == {"size", "position", "background"}
    assert all(abs(p - 0.5) < 0.06 for p in training["size"].values())
    assert all(abs(p - 1 / 9) < 0.05 for p in training["position"].values())
    assert all(abs(p - 0.5) < 0.05 for p in training["background"].values())


def test_the_control_report(report):
    json.dumps(report)  # serialisable as it is (the CLI's --json)
    assert {"color (set a)", "shape (set b)", "count (set c)", "relation (set c)"} <= set(report["confusion"])
    for name, headline in report["headline"].items():
        counts = report["confusion"][name]["counts"]
        assert headline["images"] == sum(map(sum, counts))
    families = {row["prompts"]: row for row in report["underspecified"]}
    assert len(families) == 3
    for row in families.values():
        assert row["images"] == row["captions"] * 2
        for attribute in ("size", "color", "shape", "position", "background"):
            if attribute in row and row[attribute]["tv"] is not None:
                assert 0 <= row[attribute]["tv"] <= 1
                assert sum(row[attribute]["drawn"].values()) == pytest.approx(1) or row["one_object"] == 0
    # color is never unsaid in the course's training captions: no training distribution to compare with
    assert families["shape only (color never unsaid in training)"]["color"]["tv"] is None


def test_the_control_report_is_deterministic(report):
    again = control.evaluate_control(tiny_pipeline(), n_captions=4, samples=2, underspecified_samples=2)
    assert json.dumps(again, sort_keys=True) == json.dumps(report, sort_keys=True)


@pytest.mark.parametrize("argv, message", [
    (["--captions", "0"], "--captions 0"),
    (["--samples", "0"], "samples must be at least 1"),
    (["--rerank", "4"], "drop --rerank"),
    (["--temperature", "-1"], "temperature"),
])
def test_the_control_cli_refuses_bad_options_in_one_line(argv, message, capsys):
    from dalle_lessons.__main__ import main
    assert main(["evaluate", "control", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
