import json
import subprocess
import sys

import pytest
from PIL import Image

from dalle_lessons.__main__ import main
from dalle_lessons.environment import check_environment, format_report
from test_evaluate_generation import tiny_pipeline


def test_evaluate_judge_prints_a_table_and_json(capsys):
    assert main(["evaluate", "judge", "--n", "8"]) == 0
    table = capsys.readouterr().out
    assert "all_correct" in table and "noise 0.05" in table and "cores" in table
    assert main(["evaluate", "judge", "--n", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    clean = [r for r in report["rows"] if r["condition"] == "clean"]
    assert report["what"] == "judge" and all(r["all_correct"] == 100.0 for r in clean)


def test_unknown_preset_is_a_clear_cli_error(capsys):
    assert main(["evaluate", "judge", "--preset", "huge", "--n", "2"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "dalle_lessons", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "evaluate" in out.stdout


def test_environment_check_reports_every_item_with_fixes():
    results = check_environment()
    names = [r.name for r in results]
    assert names[:2] == ["python", "torch"] and "course data" in names and "device" in names
    report = format_report(results)
    assert ("Everything is ready." in report) == all(r.ok for r in results)


# --- generate and evaluate generation, on a `tiny` pipeline with random weights -----------------------
PROMPT = "a small red circle above a blue square"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(tiny_pipeline().save_pretrained(tmp_path_factory.mktemp("tiny") / "pipeline"))


def test_generate_writes_a_grid_and_the_same_seed_gives_the_same_bytes(tiny_dir, tmp_path, capsys):
    args = ["generate", PROMPT, "a green cross", "-n", "3", "--seed", "5", "--size", "32x32", "--checkpoint", tiny_dir]
    assert main(args + ["--out", str(tmp_path / "one.png")]) == 0
    out = capsys.readouterr().out
    assert "one.png" in out and "seed 5" in out and " s" in out
    assert main(args + ["--out", str(tmp_path / "two.png")]) == 0
    grid = Image.open(tmp_path / "one.png")
    assert grid.size == (3 * 32 + 4 * 4, 2 * 32 + 3 * 4)  # 3 images per prompt row, 4-pixel gaps
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "two.png").read_bytes()
    assert main(args[:6] + ["6"] + args[7:] + ["--out", str(tmp_path / "three.png")]) == 0
    assert (tmp_path / "three.png").read_bytes() != (tmp_path / "one.png").read_bytes()


def test_generate_out_dir_writes_one_png_per_image(tiny_dir, tmp_path):
    assert main(["generate", PROMPT, "-n", "10", "--out-dir", str(tmp_path / "images"), "--checkpoint", tiny_dir,
                 "--guidance-scale", "2", "--top-k", "8", "--out", str(tmp_path / "grid.png")]) == 0
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert len(names) == 10 and names[0] == "00-00-a-small-red-circle-above-a.png" and names[-1].startswith("00-09-")
    assert Image.open(tmp_path / "images" / names[0]).size == (128, 128)  # the default size
    assert Image.open(tmp_path / "grid.png").size == (8 * 128 + 9 * 4, 2 * 128 + 3 * 4)  # rows of at most 8


@pytest.mark.parametrize("args, message", [
    (["  "], "prompt 1 is empty"),
    ([PROMPT, "-n", "0"], "at least one image"),
    ([PROMPT, "--size", "100x100"], "unknown size '100x100'"),
    ([PROMPT, "--temperature", "-1"], "temperature must be"),
])
def test_generate_errors_exit_2_with_the_problem(tiny_dir, tmp_path, capsys, args, message):
    assert main(["generate", *args, "--checkpoint", tiny_dir, "--out", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_generate_without_a_model_exits_2(tmp_path, capsys):
    assert main(["generate", PROMPT, "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no pipeline at" in capsys.readouterr().err


def test_evaluate_generation_prints_a_table_and_json(tiny_dir, capsys):
    args = ["evaluate", "generation", "--checkpoint", tiny_dir, "--captions", "2", "--samples", "2"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "all_correct" in table and "distinct_readings" in table and "held-out" in table and "cores" in table
    assert main(args + ["--json", "--sweep", "--top-p", "0.9"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["what"] == "generation" and report["sampling"]["top_p"] == 0.9
    assert [r["set"] for r in report["rows"]] == ["a", "b", "c"]
    assert len(report["sweep"]["guidance"]) == 5 and report["sweep"]["sampling"]
