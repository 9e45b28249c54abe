"""course.py: which PyTorch it installs (decided without network), the learner's workspace, the command line."""
import http.server
import json
import socket
import subprocess
import sys
import threading
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import course  # noqa: E402

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# --- which PyTorch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("requested, installed, nvidia, system, action, build, index, replace", [
    # nothing installed: the GPU decides
    (None, None, False, "Linux", "install", "cpu", CPU_INDEX, False),
    (None, None, True, "Linux", "install", "cuda", None, False),
    (None, None, False, "Darwin", "install", "cpu", None, False),       # PyPI's macOS wheels are CPU builds
    (None, None, False, "Windows", "install", "cpu", None, False),      # so are PyPI's Windows wheels
    # an installed torch is left alone (CI installs torch==2.13.0 first)
    (None, ("2.13.0+cpu", "cpu"), True, "Linux", "keep", "cpu", None, False),
    (None, ("2.13.0", "cuda"), False, "Linux", "keep", "cuda", None, False),
    ("cpu", ("2.13.0+cpu", "cpu"), True, "Linux", "keep", "cpu", None, False),
    # --torch overrides the GPU and replaces the other build
    ("cpu", None, True, "Linux", "install", "cpu", CPU_INDEX, False),
    ("cuda", None, False, "Linux", "install", "cuda", None, False),
    ("cpu", ("2.13.0", "cuda"), True, "Linux", "install", "cpu", CPU_INDEX, True),
    ("cuda", ("2.13.0+cpu", "cpu"), False, "Linux", "install", "cuda", None, True),
])
def test_plan_torch_decision_table(requested, installed, nvidia, system, action, build, index, replace):
    plan = course.plan_torch(requested, installed, nvidia, system)
    assert (plan.action, plan.build, plan.index_url, plan.replace) == (action, build, index, replace)
    assert plan.reason


def test_plan_says_why_and_how_large():
    cpu = course.plan_torch(None, None, False, "Linux").describe()
    assert "CPU-only build" in cpu and CPU_INDEX in cpu and "no NVIDIA GPU" in cpu and "MB" in cpu
    assert "--torch cuda" in cpu  # how to override
    cuda = course.plan_torch(None, None, True, "Linux").describe()
    assert "CUDA build" in cuda and "NVIDIA GPU was found" in cuda and "5.7 GB" in cuda
    keep = course.plan_torch(None, ("2.13.0+cpu", "cpu"), False, "Linux").describe()
    assert "keeping" in keep and "2.13.0+cpu" in keep


def test_plan_rejects_what_cannot_be_installed():
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        course.plan_torch("rocm", None, False, "Linux")
    with pytest.raises(ValueError, match="no CUDA build for macOS"):
        course.plan_torch("cuda", None, False, "Darwin")
    windows = course.plan_torch("cuda", None, True, "Windows")
    assert "CPU-only" in windows.reason and "pytorch.org" in windows.reason


def test_detect_nvidia_gpu(tmp_path):
    missing = tmp_path / "no-driver"
    assert not course.detect_nvidia_gpu(which=lambda name: None, driver=missing)
    assert course.detect_nvidia_gpu(which=lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None,
                                    driver=missing)
    (tmp_path / "version").write_text("NVRM version: 550.54\n")
    assert course.detect_nvidia_gpu(which=lambda name: None, driver=tmp_path / "version")


class Pip:
    """Records pip calls; fails the ones whose arguments contain `fail_on`."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, *args):
        self.calls.append(args)
        if self.fail_on and self.fail_on in args:
            raise subprocess.CalledProcessError(1, ["pip", *args])


def never_probed(url):
    raise AssertionError(f"probed {url} though nothing needed it")


def test_install_keeps_an_installed_torch_without_network(capsys):
    pip = Pip()
    plan = course.plan_torch(None, ("2.13.0+cpu", "cpu"), False, "Linux")
    assert course.install_torch(plan, pip, reachable=never_probed) == "none"
    assert pip.calls == []
    assert "keeping the torch already in .venv" in capsys.readouterr().out


def test_install_uses_pytorchs_cpu_index_when_it_answers():
    pip = Pip()
    plan = course.plan_torch(None, None, False, "Linux")
    assert course.install_torch(plan, pip, reachable=lambda url: True) == CPU_INDEX
    assert pip.calls == [("install", "torch", "--index-url", CPU_INDEX)]


def test_install_falls_back_to_the_default_index_when_the_cpu_index_is_unreachable(capsys):
    pip = Pip()
    plan = course.plan_torch(None, None, False, "Linux")
    assert course.install_torch(plan, pip, reachable=lambda url: False) == "default"
    assert pip.calls == [("install", "torch")]
    assert "cannot be reached" in capsys.readouterr().out


def test_install_falls_back_when_pip_fails_on_the_cpu_index(capsys):
    pip = Pip(fail_on="--index-url")
    plan = course.plan_torch(None, None, False, "Linux")
    assert course.install_torch(plan, pip, reachable=lambda url: True) == "default"
    assert pip.calls == [("install", "torch", "--index-url", CPU_INDEX), ("install", "torch")]
    assert "trying the default index" in capsys.readouterr().out


def test_install_replaces_the_other_build_first():
    pip = Pip()
    plan = course.plan_torch("cuda", ("2.13.0+cpu", "cpu"), False, "Linux")
    course.install_torch(plan, pip, reachable=never_probed)
    assert pip.calls == [("uninstall", "--yes", "torch"), ("install", "torch")]


def test_index_reachable_tells_a_closed_port_from_an_answering_server():
    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert not course.index_reachable(f"http://127.0.0.1:{closed}/simple", timeout=2)
    assert not course.index_reachable("https://download.pytorch.invalid/whl/cpu", timeout=2)

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:  # any HTTP answer, even 404, means the index is there
        assert course.index_reachable(f"http://127.0.0.1:{server.server_port}/whl/cpu", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_installed_torch_reads_an_environment(tmp_path):
    import torch
    assert course.installed_torch(Path(sys.executable)) == (
        torch.__version__, "cuda" if torch.version.cuda else "cpu")
    bare = tmp_path / "bare"  # a fresh environment without torch
    venv.EnvBuilder(with_pip=False).create(bare)
    python = bare / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    assert course.installed_torch(python) is None


def test_ci_keeps_its_preinstalled_torch():
    """.ci/run installs torch==2.13.0 into .venv before `python3 course.py test`: course.py must keep it."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("pip install --quiet torch==") < ci.index("python3 course.py test")
    for nvidia in (False, True):
        plan = course.plan_torch(None, ("2.13.0+cpu", "cpu"), nvidia, "Linux")
        assert plan.action == "keep"
        assert course.install_torch(plan, Pip(), reachable=never_probed) == "none"


# --- the workspace -----------------------------------------------------------------------------------

def make_course(tmp_path, lessons):
    notebooks = tmp_path / "notebooks"
    (notebooks / "solutions").mkdir(parents=True)
    for name, text in lessons.items():
        (notebooks / name).write_text(text)
    return notebooks, tmp_path / "workspace"


def test_workspace_copies_lessons_then_adds_new_ones_without_overwriting_edits(tmp_path):
    notebooks, workspace = make_course(tmp_path, {
        "00_welcome.ipynb": "w1", "01_shapes.ipynb": "s1", "solutions/01_shapes.ipynb": "sol1"})
    assert sorted(course.sync_workspace(notebooks, workspace)) == [
        "added 00_welcome.ipynb", "added 01_shapes.ipynb", "added solutions/01_shapes.ipynb"]
    assert (workspace / "solutions" / "01_shapes.ipynb").read_text() == "sol1"

    (workspace / "01_shapes.ipynb").write_text("my work")          # the learner runs and edits 01
    (notebooks / "02_tokens.ipynb").write_text("t1")               # the course gains a lesson
    (notebooks / "00_welcome.ipynb").write_text("w2")              # and improves 00 and 01
    (notebooks / "01_shapes.ipynb").write_text("s2")
    messages = course.sync_workspace(notebooks, workspace)
    assert "added 02_tokens.ipynb" in messages
    assert any(m.startswith("updated 00_welcome.ipynb") for m in messages)
    assert any(m.startswith("kept your edited 01_shapes.ipynb") and "course.py reset 01" in m for m in messages)
    assert (workspace / "01_shapes.ipynb").read_text() == "my work"
    assert (workspace / "00_welcome.ipynb").read_text() == "w2"
    assert (workspace / "02_tokens.ipynb").read_text() == "t1"
    assert course.sync_workspace(notebooks, workspace) == []       # said once, not on every start
    assert (workspace / "01_shapes.ipynb").read_text() == "my work"


def test_reset_restores_one_lesson_and_keeps_the_learners_copy(tmp_path):
    notebooks, workspace = make_course(tmp_path, {
        "00_welcome.ipynb": "w1", "03_positions.ipynb": "p1", "solutions/03_positions.ipynb": "sol3"})
    course.sync_workspace(notebooks, workspace)
    (workspace / "03_positions.ipynb").write_text("my attempt")
    (workspace / "00_welcome.ipynb").write_text("my notes")
    messages = course.reset_lessons(["3"], notebooks, workspace)
    assert (workspace / "03_positions.ipynb").read_text() == "p1"
    assert (workspace / "solutions" / "03_positions.ipynb").read_text() == "sol3"
    assert (workspace / "00_welcome.ipynb").read_text() == "my notes"  # other lessons untouched
    backups = list((workspace / "backups").glob("03_positions-*.ipynb"))
    assert [b.read_text() for b in backups] == ["my attempt"]
    assert any("backups" in m for m in messages)
    with pytest.raises(ValueError, match=r"no lesson '09'.*00, 03"):
        course.reset_lessons(["09"], notebooks, workspace)
    with pytest.raises(ValueError, match="course.py reset 03"):
        course.reset_lessons([], notebooks, workspace)


def test_workspace_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", "workspace/00_welcome.ipynb"], cwd=ROOT)
    assert result.returncode == 0, "add /workspace/ to .gitignore"


# --- the command line --------------------------------------------------------------------------------

def test_split_torch_option():
    assert course.split_torch_option(["--torch", "cpu", "--no-browser"]) == ("cpu", ["--no-browser"])
    assert course.split_torch_option(["--port", "8899", "--torch=cuda"]) == ("cuda", ["--port", "8899"])
    assert course.split_torch_option(["-k", "judge"]) == (None, ["-k", "judge"])
    with pytest.raises(ValueError, match="cpu or cuda"):
        course.split_torch_option(["--torch"])
    with pytest.raises(ValueError, match="not 'gpu'"):
        course.split_torch_option(["--torch", "gpu"])


@pytest.fixture
def launched(monkeypatch, tmp_path):
    """Run course.main without installing or starting anything; collect the commands it would run."""
    calls = {"installed": [], "run": []}
    monkeypatch.setattr(course, "ensure_installed", lambda torch=None: calls["installed"].append(torch))
    monkeypatch.setattr(course, "sync_workspace", lambda: ["added 00_welcome.ipynb"])
    monkeypatch.setattr(course, "WORKSPACE", tmp_path / "workspace")

    def fake_run(command, cwd=None):
        calls["run"].append(command)
        return subprocess.CompletedProcess(command, 0)
    monkeypatch.setattr(course.subprocess, "run", fake_run)
    return calls


def test_unknown_options_go_to_jupyterlab(launched, tmp_path):
    assert course.main(["--no-browser", "--port", "8899", "--allow-root", "--torch", "cpu"]) == 0
    command = launched["run"][-1]
    assert command[1:] == ["lab", "--notebook-dir", str(tmp_path / "workspace"),
                           "--no-browser", "--port", "8899", "--allow-root"]
    assert launched["installed"] == ["cpu"]
    assert course.main(["lab", "--notebook-dir=elsewhere"]) == 0
    assert launched["run"][-1][1:] == ["lab", "--notebook-dir=elsewhere"]


def test_test_command_passes_pytest_options(launched):
    assert course.main(["test", "-k", "judge"]) == 0
    command = launched["run"][-1]
    assert command[-2:] == ["-k", "judge"] and "--nbval" in command


def test_bad_commands_say_what_is_wrong(launched, capsys):
    assert course.main(["tset"]) == 2
    assert "unknown command 'tset'" in capsys.readouterr().err
    assert course.main(["--torch", "gpu"]) == 2
    assert "not 'gpu'" in capsys.readouterr().err
    assert course.main(["reset"]) == 2
    assert "course.py reset 03" in capsys.readouterr().err
    assert launched["run"] == []
    assert course.main(["--help"]) == 0 and "reset" in capsys.readouterr().out


def test_ensure_installed_in_ci_runs_pip_twice_and_keeps_torch(monkeypatch, tmp_path, capsys):
    """The CI path end to end, pip faked: no torch install, no network probe, the stamp written."""
    commands = []
    monkeypatch.setattr(course, "PYTHON", Path(sys.executable))
    monkeypatch.setattr(course, "VENV", tmp_path)
    monkeypatch.setattr(course, "STAMP", tmp_path / ".course-installed")
    monkeypatch.setattr(course, "run", lambda *args: commands.append([str(a) for a in args[1:]]))
    monkeypatch.setattr(course, "installed_torch", lambda python=None: ("2.13.0+cpu", "cpu"))
    monkeypatch.setattr(course, "index_reachable", never_probed)
    course.ensure_installed()
    assert commands == [["-m", "pip", "install", "--upgrade", "pip"], ["-m", "pip", "install", "-e", ".[dev]"]]
    out = capsys.readouterr().out
    assert "keeping the torch already in .venv" in out and "installed: torch 2.13.0+cpu (cpu build)" in out
    course.ensure_installed()  # up to date: nothing runs
    assert len(commands) == 2
    course.ensure_installed(torch="cuda")  # an explicit choice is honoured even when up to date
    assert ["-m", "pip", "uninstall", "--yes", "torch"] in commands and ["-m", "pip", "install", "torch"] in commands
