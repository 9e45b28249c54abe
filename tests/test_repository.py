"""The course's promises about itself: one set of dependencies, notebooks that match their sources."""
import json
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from dalle_lessons.paths import REPO_URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as notebook_tool  # noqa: E402

CONDA_TO_PIP = {"pytorch": "torch", "python": None, "pip": None}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    dependencies = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    conda_lines = re.findall(r"^\s+- (\S+)$", dependencies, flags=re.M)
    conda_names = {CONDA_TO_PIP.get(_name(l), _name(l)) for l in conda_lines} - {None}
    assert conda_names == pip_names


def test_every_notebook_matches_its_source_and_was_executed_in_order():
    assert notebook_tool.check() == []


def test_every_install_cell_clones_the_one_repository_url():
    notebooks = sorted(ROOT.glob("notebooks/**/*.ipynb"))
    assert notebooks
    for path in notebooks:
        first_code = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        urls = re.findall(r"https://\S+?(?=[\"'])", first_code.source)
        assert urls == [REPO_URL], path


def test_every_lesson_has_executed_solutions_and_two_exercises():
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem[:2] for p in lessons][:4] == ["00", "01", "02", "03"]
    for lesson in lessons:
        if lesson.stem.startswith("00"):
            continue  # the welcome notebook has no exercises
        source = "".join(c.source for c in nbformat.read(lesson, as_version=4).cells)
        assert source.count("raise NotImplementedError") >= 2, lesson
        assert (ROOT / "notebooks" / "solutions" / lesson.name).exists(), lesson


def test_notebooks_stay_small():
    for path in ROOT.glob("notebooks/**/*.ipynb"):
        assert path.stat().st_size < 2_500_000, path


def test_code_cells_stay_short():
    """Each code cell is one piece the markdown before it explains: at most 30 lines (the shared install cell,
    first in every notebook, aside)."""
    notebooks = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("notebooks/solutions/*.ipynb"))
    assert notebooks
    long_cells = []
    for path in notebooks:
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"][1:]
        for cell in code:
            lines = cell.source.splitlines()
            if len(lines) > 30:
                long_cells.append(f"{path.relative_to(ROOT)}: {len(lines)} lines, starting {lines[0]!r}")
    assert not long_cells, "code cells over 30 lines: split them, with markdown before each piece:\n" + \
        "\n".join(long_cells)


def test_readme_quick_start_gives_exactly_two_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, flags=re.S).group(1)
    commands = [l for l in block.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert commands == ["python3 course.py", "python3 course.py test"]
    assert "python3 course.py test" in (ROOT / ".ci" / "run").read_text()


def test_nbval_sanitizer_is_shipped():
    assert "[memory addresses]" in (ROOT / "tests" / "nbval_sanitize.cfg").read_text()


def test_notebooks_store_the_kernelspec_jupyterlab_writes():
    """Opening a lesson must not mark it modified: JupyterLab writes ipykernel's own display name."""
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert notebook_tool.KERNELSPEC == {"display_name": spec.display_name, "language": spec.language,
                                        "name": "python3"}
    for path in ROOT.glob("notebooks/**/*.ipynb"):
        assert nbformat.read(path, as_version=4).metadata["kernelspec"] == notebook_tool.KERNELSPEC, path


def test_stats_counts_only_outputs_nbval_compares():
    code = nbformat.v4.new_code_cell
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 640x480 with 1 Axes>"})
    printed = nbformat.v4.new_output("stream", name="stdout", text="loss 0.123\n")
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="empty prompt", traceback=[])
    cells = {
        "compared": code("print(1)", outputs=[printed]),
        "image only": code("plt.show()", outputs=[figure]),
        "ignored": code("# NBVAL_IGNORE_OUTPUT\nprint(1)", outputs=[printed]),
        "skipped": code("# NBVAL_SKIP\nprint(1)", outputs=[printed]),
    }
    for expected, cell in cells.items():
        assert notebook_tool.classify(cell) == expected, expected
    assert notebook_tool.classify(code("print(1); plt.show()", outputs=[printed, figure])) == "compared"
    assert notebook_tool.classify(code("# NBVAL_RAISES_EXCEPTION\ngenerate('')", outputs=[error])) == "compared"
    tagged = code("print(1)", outputs=[printed], metadata={"tags": ["nbval-ignore-output"]})
    assert notebook_tool.classify(tagged) == "ignored"
    assert notebook_tool.compared_text(cells["compared"]) == ["loss 0.123\n"]


def test_committed_outputs_name_no_absolute_path_of_the_authors_machine():
    """Outputs (environment check, tracebacks) speak of `data/` and `dalle_lessons/`, not someone's disk."""
    for path in ROOT.glob("notebooks/**/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                text = json.dumps(output)
                for marker in (str(ROOT), "/home/", "/Users/"):
                    assert marker not in text, f"{path.name}: an output names {marker}: rebuild it"


def test_links_between_notebooks_resolve_and_the_road_map_is_honest():
    """Every markdown link to a notebook (Next, solutions, road map) opens an existing file, relative to the
    notebook that holds it; a lesson the road map marks as coming does not exist yet."""
    for path in sorted(ROOT.glob("notebooks/**/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            for target in re.findall(r"\]\(([^)\s]+)\)", cell.source):
                if target.endswith((".ipynb", "/")) and "://" not in target:
                    assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"
    road_map = (ROOT / "notebooks" / "src" / "00_welcome.py").read_text().split("## 5. The road map", 1)[1]
    rows = re.findall(r"^# \| (.+) \|$", road_map, flags=re.M)[1:]  # after the header
    assert len(rows) == 12
    for row in rows:
        lesson, status = row.split(" | ")[0], row.split(" | ")[-1]
        number = re.search(r"\b(\d\d) ", lesson).group(1)
        exists = any((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
        assert status == ("ready" if exists else "*coming*"), f"road map row {number}: {status}, but the notebook " \
            f"{'exists' if exists else 'does not exist'}"


def test_environment_check_names_the_data_folder_relative_to_the_course():
    from dalle_lessons.environment import check_environment, format_report
    report = format_report(check_environment())
    assert "course data  data/ in the course folder" in report and str(ROOT) not in report
