#!/usr/bin/env python3
"""Set up the course and open it, or run every test. Needs only Python 3.10+ to start.

    python3 course.py                  # create .venv, install the course, open JupyterLab on workspace/
    python3 course.py test             # create .venv, install the course, run unit tests + strict nbval
    python3 course.py reset 03         # put a fresh copy of lesson 03 in workspace/ (yours is backed up)

You work in workspace/, your own copy of notebooks/ that git ignores: the first run copies every
lesson there, later runs add new lessons (and refresh the ones you never changed) without touching
your edits. Instructors and the tests use notebooks/ itself.

Options:
    --torch cpu|cuda   which PyTorch build to install. Default: a torch already in .venv is kept;
                       otherwise the CPU-only build (from PyTorch's CPU wheel index, about 200 MB)
                       unless an NVIDIA GPU is found (then the CUDA build from PyPI, several GB).
    anything else      goes to JupyterLab (e.g. --no-browser, --port 8899, --allow-root), or to
                       pytest after `test` (e.g. `python3 course.py test -k judge`).

The first run installs PyTorch and friends into .venv (a few minutes); later runs start at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".course-installed"
NOTEBOOKS = ROOT / "notebooks"
WORKSPACE = ROOT / "workspace"

TEST_COMMAND = ["-m", "pytest", "tests", "notebooks", "--nbval",
                "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]

# ---------------------------------------------------------------------------------------------------
# Which PyTorch to install
# ---------------------------------------------------------------------------------------------------

#: What PyTorch's install selector (pytorch.org/get-started) gives for Linux + pip + CPU.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Rough sizes, measured on Linux x86_64 with Python 3.11 and torch 2.13 (the CUDA figure on a fresh clone).
SIZES = {
    "cpu": "about 200 MB to download; the course's whole .venv comes to about 1.3 GB",
    "cuda": "several GB to download; the course's whole .venv comes to about 5.7 GB",
    "default": "a few hundred MB to download",
}


@dataclass(frozen=True)
class TorchPlan:
    """What to do about PyTorch, and why, decided before anything is downloaded."""
    action: str                   # "keep" or "install"
    build: str                    # "cpu", "cuda", or what an installed torch is
    reason: str                   # one sentence a learner can check
    index_url: str | None = None  # None: pip's default index (PyPI)
    replace: bool = False         # uninstall the torch in .venv first (it is the other build)
    size: str = ""

    def describe(self) -> str:
        if self.action == "keep":
            return f"PyTorch: keeping the torch already in .venv ({self.reason})."
        where = f"PyTorch's CPU wheel index ({self.index_url})" if self.index_url else "the default index (PyPI)"
        build = {"cpu": "the CPU-only build", "cuda": "the CUDA build"}.get(self.build, "torch")
        return f"PyTorch: installing {build} from {where}, because {self.reason}. Roughly: {self.size}."


def plan_torch(requested: str | None, installed: tuple[str, str] | None, nvidia_gpu: bool,
               system: str) -> TorchPlan:
    """Decide which PyTorch .venv gets. A pure function: every input is passed in, nothing is probed.

    requested: "cpu", "cuda" or None (the --torch option); installed: (version, build) of the torch in
    .venv, build being "cpu", "cuda" or e.g. "rocm", or None when there is none; nvidia_gpu: whether an
    NVIDIA driver or nvidia-smi was found; system: platform.system() ("Linux", "Darwin", "Windows").
    """
    if requested not in (None, "cpu", "cuda"):
        raise ValueError(f"--torch must be 'cpu' or 'cuda', not {requested!r}")
    if installed is not None:
        version, build = installed
        if requested is None:
            return TorchPlan("keep", build, f"torch {version}, {build} build, is already installed; "
                             "`--torch cpu|cuda` replaces it")
        if build == requested:
            return TorchPlan("keep", build, f"torch {version} is already the {build} build asked for")
    if requested == "cuda" and system == "Darwin":
        raise ValueError("PyTorch has no CUDA build for macOS: use `--torch cpu` (its macOS build uses the GPU "
                         "through MPS)")
    if requested:
        why = f"--torch {requested} asked for it"
    elif nvidia_gpu:
        why = "an NVIDIA GPU was found (nvidia-smi or its driver); `--torch cpu` installs the small CPU-only build"
    else:
        why = "no NVIDIA GPU was found (no nvidia-smi, no driver); `--torch cuda` installs the CUDA build"
    build = requested or ("cuda" if nvidia_gpu else "cpu")
    replace = installed is not None
    if build == "cpu":
        if system == "Linux":  # PyPI's Linux wheels bundle CUDA; PyTorch's own index has the CPU-only ones
            return TorchPlan("install", "cpu", why, CPU_INDEX, replace, SIZES["cpu"])
        # On macOS and Windows, PyPI's wheels are already CPU-only: that is what the selector gives too.
        return TorchPlan("install", "cpu", why + f"; on {system} PyPI's torch is the CPU build", None, replace,
                         SIZES["default"])
    if system == "Windows":
        return TorchPlan("install", "cuda", why + "; note that PyPI's Windows wheels are CPU-only: for CUDA, "
                         "install torch with the command pytorch.org/get-started gives, then run this again",
                         None, replace, SIZES["default"])
    return TorchPlan("install", "cuda", why, None, replace, SIZES["cuda"])


def detect_nvidia_gpu(which: Callable[[str], str | None] = shutil.which,
                      driver: Path = Path("/proc/driver/nvidia/version")) -> bool:
    """True when an NVIDIA driver is present: nvidia-smi on the PATH, or the Linux driver's /proc entry."""
    return which("nvidia-smi") is not None or driver.exists()


def index_reachable(url: str, timeout: float = 10.0) -> bool:
    """Whether a package index answers at all (any HTTP answer counts; DNS or connection failures do not)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def installed_torch(python: Path = PYTHON) -> tuple[str, str] | None:
    """(version, build) of the torch in the course's environment, or None when it has none."""
    probe = ("import json, torch\n"
             "build = 'cuda' if torch.version.cuda else ('rocm' if getattr(torch.version, 'hip', None) else 'cpu')\n"
             "print(json.dumps([torch.__version__, build]))")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    version, build = json.loads(result.stdout.strip().splitlines()[-1])
    return version, build


def install_torch(plan: TorchPlan, pip: Callable[..., None], reachable: Callable[[str], bool] | None = None) -> str:
    """Carry out a plan with `pip(*args)`; PyTorch's own index falls back to the default one. Returns the index used."""
    reachable = reachable or index_reachable
    print(plan.describe(), flush=True)
    if plan.action == "keep":
        return "none"
    if plan.replace:
        pip("uninstall", "--yes", "torch")
    if plan.index_url:
        if not reachable(plan.index_url):
            print(f"PyTorch: {plan.index_url} cannot be reached from here; installing torch from the default "
                  "index instead (on Linux that is the larger CUDA build).", flush=True)
        else:
            try:
                pip("install", "torch", "--index-url", plan.index_url)
                return plan.index_url
            except subprocess.CalledProcessError:
                print(f"PyTorch: installing from {plan.index_url} failed (see above); trying the default index.",
                      flush=True)
    pip("install", "torch")
    return "default"


# ---------------------------------------------------------------------------------------------------
# Installing the course
# ---------------------------------------------------------------------------------------------------

def run(*args: str | os.PathLike) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def folder_size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            file = Path(folder) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def ensure_installed(torch: str | None = None) -> None:
    """Create .venv and install the package with its dev extras; redo it when pyproject.toml changes."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python 3.10 or newer is needed, this is {sys.version.split()[0]}: install a newer Python.")
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and torch is None:
        return
    run(PYTHON, "-m", "pip", "install", "--upgrade", "pip")
    before = installed_torch()
    plan = plan_torch(torch, before, detect_nvidia_gpu(), platform.system())
    install_torch(plan, lambda *args: run(PYTHON, "-m", "pip", *args))
    run(PYTHON, "-m", "pip", "install", "-e", ".[dev]")  # torch is already there: pip keeps it
    STAMP.write_text(wanted)
    version, build = (before if plan.action == "keep" else installed_torch()) or ("?", "?")
    print(f"installed: torch {version} ({build} build); .venv takes {folder_size(VENV) / 1e9:.1f} GB", flush=True)


# ---------------------------------------------------------------------------------------------------
# The learner's workspace
# ---------------------------------------------------------------------------------------------------

def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lessons(notebooks: Path) -> list[Path]:
    """Every notebook a learner gets, relative to notebooks/: the lessons and their solutions."""
    found = sorted(notebooks.glob("*.ipynb")) + sorted(notebooks.glob("solutions/*.ipynb"))
    return [p.relative_to(notebooks) for p in found]


def sync_workspace(notebooks: Path = NOTEBOOKS, workspace: Path = WORKSPACE) -> list[str]:
    """Copy into workspace/ every notebook it lacks; never overwrite one the learner changed.

    A notebook still exactly as it was copied is refreshed when notebooks/ has a newer version. The copies
    are recorded (by SHA-256) in workspace/.course-copies.json. Returns one line per thing done.
    """
    record_file = workspace / ".course-copies.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    messages = []
    for rel in _lessons(notebooks):
        source, target, key = notebooks / rel, workspace / rel, rel.as_posix()
        new = _digest(source)
        entry = record.get(key, {})
        if not target.exists():
            messages.append(f"added {key}")
        elif _digest(target) == new:
            record[key] = {"copied": new, "seen": new}
            continue
        elif _digest(target) == entry.get("copied"):
            messages.append(f"updated {key} (a newer version; you had not changed yours)")
        else:
            if entry.get("seen") != new:
                messages.append(f"kept your edited {key}; notebooks/{key} has changed since. To take the new one: "
                                f"python3 course.py reset {rel.name[:2]} (yours is kept in workspace/backups/)")
                record[key] = {**entry, "seen": new}
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        record[key] = {"copied": new, "seen": new}
    workspace.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return messages


def reset_lessons(lessons: list[str], notebooks: Path = NOTEBOOKS, workspace: Path = WORKSPACE) -> list[str]:
    """Replace workspace/'s copy of each lesson (and its solutions) with notebooks/' one; back up edited copies."""
    available = sorted({rel.name[:2] for rel in _lessons(notebooks)})
    if not lessons:
        raise ValueError(f"name the lesson(s) to reset, e.g. `python3 course.py reset 03` (lessons: {', '.join(available)})")
    record_file = workspace / ".course-copies.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    messages = []
    for lesson in lessons:
        prefix = lesson.zfill(2) if lesson.isdigit() else lesson
        matches = [rel for rel in _lessons(notebooks) if rel.name.startswith(prefix)]
        if not matches:
            raise ValueError(f"no lesson {lesson!r} in notebooks/ (lessons: {', '.join(available)})")
        for rel in matches:
            source, target = notebooks / rel, workspace / rel
            if target.exists() and _digest(target) != _digest(source):
                backup = workspace / "backups" / f"{target.stem}-{time.strftime('%Y%m%d-%H%M%S')}{target.suffix}"
                backup.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(target), backup)
                messages.append(f"your {rel.as_posix()} is now {backup.relative_to(workspace.parent).as_posix()}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            record[rel.as_posix()] = {"copied": _digest(source), "seen": _digest(source)}
            messages.append(f"reset {rel.as_posix()} to the course's version")
    workspace.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return messages


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def split_torch_option(args: list[str]) -> tuple[str | None, list[str]]:
    """Take `--torch cpu|cuda` (or `--torch=...`) out of the arguments; the rest are passed on."""
    torch, rest, k = None, [], 0
    while k < len(args):
        if args[k] == "--torch":
            if k + 1 >= len(args):
                raise ValueError("--torch needs a value: cpu or cuda")
            torch, k = args[k + 1], k + 2
            continue
        if args[k].startswith("--torch="):
            torch = args[k].split("=", 1)[1]
        else:
            rest.append(args[k])
        k += 1
    if torch not in (None, "cpu", "cuda"):
        raise ValueError(f"--torch must be 'cpu' or 'cuda', not {torch!r}")
    return torch, rest


def lab_command(args: list[str]) -> list[str]:
    """The JupyterLab command line: workspace/ as the root, the learner's own options passed through."""
    root_given = any(a.split("=")[0] in ("--notebook-dir", "--ServerApp.root_dir") for a in args)
    return [str(BIN / "jupyter"), "lab", *([] if root_given else ["--notebook-dir", str(WORKSPACE)]), *args]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command = argv[0] if argv and not argv[0].startswith("-") else "lab"
    args = argv[1:] if argv and argv[0] == command else list(argv)
    if command not in ("lab", "test", "reset"):
        print(f"unknown command {command!r}: use lab (the default), test or reset; options for JupyterLab "
              f"start with --\n{__doc__}", file=sys.stderr)
        return 2
    try:
        if command == "reset":
            print("\n".join(reset_lessons(args)))
            return 0
        torch, args = split_torch_option(args)
        ensure_installed(torch)
    except ValueError as error:
        print(f"course.py: {error}", file=sys.stderr)
        return 2
    if command == "test":
        return subprocess.run([str(PYTHON), *TEST_COMMAND, *args], cwd=ROOT).returncode
    for line in sync_workspace():
        print("workspace:", line)
    print(f"opening JupyterLab on {WORKSPACE.name}/ (your copy of notebooks/; start with "
          "00_welcome.ipynb)", flush=True)
    if os.name != "nt" and os.geteuid() == 0 and "--allow-root" not in args:
        print("note: you are root (a container?): JupyterLab refuses to start as root unless you add --allow-root, "
              "e.g. python3 course.py --allow-root --no-browser", flush=True)
    return subprocess.run(lab_command(args), cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
