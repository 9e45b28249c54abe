"""Build the course notebooks from their reviewable sources, execute them, and check they agree.

Each notebook is written as a plain Python file in "percent" format under `notebooks/src/`
(`# %%` starts a code cell, `# %% [markdown]` a markdown cell whose lines start with `# `).
This script turns each source into an .ipynb, puts the shared Colab install cell first, executes
it top to bottom with a fresh kernel, and saves it with its outputs:

    python tools/notebooks.py build            # every notebook, in order (then the solutions)
    python tools/notebooks.py build 02 03      # only those whose name starts with 02 or 03
    python tools/notebooks.py check            # sources and committed notebooks agree (a test runs this)
    python tools/notebooks.py stats            # how many output cells strict nbval really compares
    python tools/notebooks.py kernelspec       # rewrite committed notebooks' kernelspec in place

Sources:  notebooks/src/NN_name.py            -> notebooks/NN_name.ipynb
          notebooks/src/solutions/NN_name.py  -> notebooks/solutions/NN_name.ipynb
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dalle_lessons.paths import REPO_URL  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
SOURCES = NOTEBOOKS / "src"

#: The kernelspec JupyterLab writes into a notebook it opens (ipykernel's own kernel.json). Storing
#: exactly this keeps a notebook unmodified when it is merely opened (a test compares it with ipykernel's).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

INSTALL_CELL = f'''# NBVAL_SKIP
# Colab or a fresh Python: fetch the course and install its package when it is missing.
# (In a clone with `pip install -e .` this cell does nothing.)
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("dalle_lessons") is None:
    REPO_URL = "{REPO_URL}"
    if not os.path.isdir("build-dalle-from-scratch"):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "build-dalle-from-scratch"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "build-dalle-from-scratch"], check=True)
    sys.path.insert(0, os.path.abspath("build-dalle-from-scratch"))'''


def parse_percent(text: str) -> list[nbformat.NotebookNode]:
    """Split a percent-format source into notebook cells."""
    cells, kind, lines = [], None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "code" and body.strip():
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    cells = parse_percent(source.read_text(encoding="utf-8"))
    for cell in cells:  # a cell that shows an error on purpose must not stop the build
        if cell.cell_type == "code" and cell.source.startswith("# NBVAL_RAISES_EXCEPTION"):
            cell.metadata["tags"] = ["raises-exception"]
    # The title (first markdown cell) stays on top; the install cell follows it.
    position = 1 if cells and cells[0].cell_type == "markdown" else 0
    cells.insert(position, nbformat.v4.new_code_cell(INSTALL_CELL))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
    }
    return nb


def target_for(source: Path) -> Path:
    rel = source.relative_to(SOURCES)
    return (NOTEBOOKS / rel).with_suffix(".ipynb")


def all_sources() -> list[Path]:
    main = sorted(p for p in SOURCES.glob("*.py"))
    solutions = sorted(p for p in (SOURCES / "solutions").glob("*.py"))
    return main + solutions


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int) -> float:
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    elapsed = time.perf_counter() - start
    for cell in nb.cells:  # keep committed notebooks small and free of run-specific metadata
        cell.metadata.pop("execution", None)
        cell.metadata.pop("tags", None)  # nbval reads the NBVAL_* comment itself
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:  # tracebacks (never compared) name files relative to the course, not the author's disk
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.traceback = [local_paths(line) for line in output.traceback]
    return elapsed


def local_paths(text: str) -> str:
    """`text` with the course folder's absolute path made relative and the home folder written as ~."""
    return text.replace(str(ROOT) + os.sep, "").replace(str(Path.home()) + os.sep, "~" + os.sep)


def build(prefixes: list[str], timeout: int) -> None:
    times = {}
    for source in all_sources():
        if prefixes and not any(source.stem.startswith(p) for p in prefixes):
            continue
        target = target_for(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = notebook_from_source(source)
        print(f"executing {target.relative_to(ROOT)} ...", flush=True)
        elapsed = execute(nb, target.parent, timeout)
        nbformat.write(nb, target)
        times[str(target.relative_to(ROOT))] = round(elapsed, 1)
        print(f"  {elapsed:6.1f} s, {target.stat().st_size / 1e6:.2f} MB", flush=True)
    print(json.dumps(times, indent=1))


def check() -> list[str]:
    """Problems where a committed notebook does not match its source or was not executed in order."""
    problems = []
    for source in all_sources():
        target = target_for(source)
        if not target.exists():
            problems.append(f"{target.relative_to(ROOT)} is missing: run `python tools/notebooks.py build`")
            continue
        expected = [(c.cell_type, c.source) for c in notebook_from_source(source).cells]
        committed_nb = nbformat.read(target, as_version=4)
        committed = [(c.cell_type, c.source) for c in committed_nb.cells]
        if expected != committed:
            problems.append(f"{target.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: rebuild it")
        if committed_nb.metadata.get("kernelspec") != KERNELSPEC:
            problems.append(f"{target.relative_to(ROOT)} has kernelspec {committed_nb.metadata.get('kernelspec')}, "
                            f"not {KERNELSPEC}: run `python tools/notebooks.py kernelspec`")
        counts = [c.execution_count for c in committed_nb.cells if c.cell_type == "code"]
        if counts != list(range(1, len(counts) + 1)):
            problems.append(f"{target.relative_to(ROOT)} was not executed top to bottom: rebuild it")
    return problems


#: Output keys strict nbval leaves out of its comparison (nbval 0.11, `IPyNbFile.__init__`, without nbdime):
#: pictures and widget ids are never compared, nor stream names, tracebacks or metadata.
NBVAL_SKIP_COMPARE = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                      "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}
#: matplotlib's text stand-in for a figure: nbval compares it, but it says nothing about the picture.
FIGURE_REPR = re.compile(r"^<Figure size [0-9.]+x[0-9.]+ with \d+ Axes>$")


def nbval_options(cell: nbformat.NotebookNode) -> dict:
    """nbval's options for a code cell, read by nbval's own parsers (tags first, comments win)."""
    from nbval.plugin import find_comment_markers, find_metadata_tags
    options = dict(find_metadata_tags(cell.metadata))
    options.update(find_comment_markers(cell.source))
    return options


def compared_text(cell: nbformat.NotebookNode) -> list[str]:
    """The committed outputs of a code cell that strict nbval compares, as text, figure stand-ins left out.

    Follows nbval: a cell marked NBVAL_SKIP or NBVAL_IGNORE_OUTPUT (comment or tag) is not compared; otherwise
    stream text, error names and messages and every non-picture MIME type are, except matplotlib's
    `<Figure size ...>` line, which only restates the figure's size.
    """
    options = nbval_options(cell)
    if options.get("skip") or options.get("check") is False:
        return []
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type == "error":
            texts.append(f"{output.ename}: {output.evalue}")
        else:
            for mime, value in output.get("data", {}).items():
                if mime in NBVAL_SKIP_COMPARE:
                    continue
                value = value if isinstance(value, str) else json.dumps(value)
                if not (mime == "text/plain" and FIGURE_REPR.match(value.strip())):
                    texts.append(value)
    return [t for t in texts if t.strip()]


def classify(cell: nbformat.NotebookNode) -> str:
    """'compared', 'image only' (nbval compares nothing but a figure's size), 'ignored' or 'skipped'."""
    options = nbval_options(cell)
    if options.get("skip"):
        return "skipped"
    if options.get("check") is False:
        return "ignored"
    return "compared" if compared_text(cell) else "image only"


def stats() -> tuple[int, int]:
    """Per notebook: code cells with output, and how many of those have text strict nbval compares."""
    totals = {"compared": 0, "image only": 0, "ignored": 0, "skipped": 0}
    print(f"{'notebook':54} {'code':>4} {'output':>6} {'compared':>8} {'image only':>10} {'ignored':>7} {'skipped':>7}")
    for source in all_sources():
        nb = nbformat.read(target_for(source), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        kinds = [classify(c) for c in code if c.outputs]
        counts = {kind: kinds.count(kind) for kind in totals}
        for kind in totals:
            totals[kind] += counts[kind]
        print(f"{str(target_for(source).relative_to(ROOT)):54} {len(code):4} {len(kinds):6} {counts['compared']:8} "
              f"{counts['image only']:10} {counts['ignored']:7} {counts['skipped']:7}")
    with_output = sum(totals.values())
    print(f"all notebooks: strict nbval compares the text of {totals['compared']} of {with_output} output cells "
          f"({100 * totals['compared'] / max(with_output, 1):.0f} %); {totals['image only']} show only a figure "
          f"(nbval does not compare pictures), {totals['ignored']} are NBVAL_IGNORE_OUTPUT, "
          f"{totals['skipped']} NBVAL_SKIP")
    return totals["compared"], with_output


def set_kernelspec() -> list[Path]:
    """Write KERNELSPEC into every committed notebook whose metadata differs; outputs stay as they are."""
    changed = []
    for source in all_sources():
        target = target_for(source)
        if not target.exists():
            continue
        nb = nbformat.read(target, as_version=4)
        if nb.metadata.get("kernelspec") != KERNELSPEC:
            nb.metadata["kernelspec"] = dict(KERNELSPEC)
            nbformat.write(nb, target)
            changed.append(target)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="convert and execute notebooks")
    b.add_argument("prefixes", nargs="*", help="only notebooks whose file name starts with one of these")
    b.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    sub.add_parser("check", help="verify committed notebooks match their sources")
    sub.add_parser("stats", help="count the output cells whose text strict nbval compares")
    sub.add_parser("kernelspec", help="store the kernelspec JupyterLab writes in every committed notebook")
    args = parser.parse_args()
    if args.command == "build":
        build(args.prefixes, args.timeout)
    elif args.command == "stats":
        stats()
    elif args.command == "kernelspec":
        changed = set_kernelspec()
        print("\n".join(f"updated {p.relative_to(ROOT)}" for p in changed) or "every notebook already has it")
    else:
        problems = check()
        print("\n".join(problems) or "all notebooks match their sources")
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
