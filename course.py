#!/usr/bin/env python3
"""Set up the course and open it, or run every test. Needs only Python 3.10+ to start.

    python3 course.py          # create .venv, install the course, open JupyterLab on notebooks/
    python3 course.py test     # create .venv, install the course, run unit tests + strict nbval

Extra arguments after `test` go to pytest (e.g. `python3 course.py test -k judge`).
The first run installs PyTorch and friends into .venv (a few minutes); later runs start at once.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".course-installed"

TEST_COMMAND = ["-m", "pytest", "tests", "notebooks", "--nbval",
                "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]


def run(*args: str | os.PathLike) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def ensure_installed() -> None:
    """Create .venv and install the package with its dev extras; redo it when pyproject.toml changes."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python 3.10 or newer is needed, this is {sys.version.split()[0]}: install a newer Python.")
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    run(PYTHON, "-m", "pip", "install", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "-e", ".[dev]")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "lab"
    if command not in ("lab", "test"):
        print(__doc__)
        return 2
    ensure_installed()
    if command == "test":
        return subprocess.run([str(PYTHON), *TEST_COMMAND, *argv[1:]], cwd=ROOT).returncode
    return subprocess.run([str(BIN / "jupyter"), "lab", "--notebook-dir", str(ROOT / "notebooks")], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
