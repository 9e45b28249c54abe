import json
import subprocess
import sys

from dalle_lessons.__main__ import main
from dalle_lessons.environment import check_environment, format_report


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
