"""Is this environment ready for the course? Each check says what is wrong and how to fix it."""
from __future__ import annotations

import importlib
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

#: (import name, pip name, lowest version the course is tested with)
REQUIREMENTS = (
    ("torch", "torch", "2.1"),
    ("tokenizers", "tokenizers", "0.15"),
    ("PIL", "pillow", "9.0"),
    ("matplotlib", "matplotlib", "3.7"),
    ("ipywidgets", "ipywidgets", "8.0"),
    ("tqdm", "tqdm", "4.60"),
    ("safetensors", "safetensors", "0.4"),
    ("numpy", "numpy", "1.24"),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_environment() -> list[CheckResult]:
    """Run every check; never raises, so a learner always sees the whole list."""
    results = [CheckResult(
        "python", sys.version_info >= (3, 10), platform.python_version(),
        "the course needs Python 3.10 or newer: install it from python.org or use conda")]
    for module, pip_name, lowest in REQUIREMENTS:
        try:
            version = getattr(importlib.import_module(module), "__version__", "0")
        except Exception as error:  # an import can fail in many ways; report them all the same way
            results.append(CheckResult(pip_name, False, f"cannot import {module}: {error}",
                                       f"pip install '{pip_name}>={lowest}' (or: pip install -e . in the course folder)"))
            continue
        ok = _version_tuple(version) >= _version_tuple(lowest)
        results.append(CheckResult(pip_name, ok, version, "" if ok else f"pip install -U '{pip_name}>={lowest}'"))
    try:
        from .manifest import manifest_problems
        from .paths import data_dir
        folder = data_dir()
        problems = manifest_problems(folder)  # every committed file present, with the size and SHA-256 it should have
        results.append(CheckResult(
            "course data", not problems, f"{course_relative(folder)}" + ("" if problems else " (matches MANIFEST.json)")
            + "".join(f"\n    {problem}" for problem in problems),
            "restore data/ from git (git checkout -- data) or re-create it: see data/README.md" if problems else ""))
    except FileNotFoundError as error:
        results.append(CheckResult("course data", False, str(error), "run from a clone: pip install -e ."))
    results.append(CheckResult("device", True, describe_device()))
    return results


def course_relative(path: Path) -> str:
    """`path` as seen from the course folder (e.g. 'data/'), so reports and committed outputs name no
    one's home directory; a path outside the course (DALLE_LESSONS_DATA) stays absolute."""
    course = Path(__file__).resolve().parent.parent
    try:
        return f"{path.resolve().relative_to(course).as_posix()}/ in the course folder"
    except ValueError:
        return str(path)


def pick_device() -> str:
    """'cuda' on a GPU (Colab), otherwise 'cpu'. Everything in the course also runs on the CPU."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: "str | None") -> str:
    """`device` checked before any work ('cpu', 'cuda', 'cuda:N', 'mps'), or `pick_device()` for None or 'auto'.

    A device this machine lacks is a one-line ValueError naming the fix, instead of a RuntimeError deep
    inside torch after the model has loaded.
    """
    import torch
    if device is None:
        return pick_device()
    name = str(device).strip().lower() if isinstance(device, (str, torch.device)) else None
    if name is None:
        raise TypeError(f"device must be a str such as 'cpu', 'cuda' or 'auto', got {type(device).__name__}")
    if name == "auto":
        return pick_device()
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"unknown device {str(device)[:40]!r}: choose 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' "
                         "(the GPU when there is one, else the CPU)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA device here: use --device cpu or auto (device='cpu' or "
                             "'auto' from Python), or install a CUDA build of PyTorch on a machine with a GPU")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered "
                             f"from 0; choose cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r}: Apple's Metal (MPS) is not available here; use 'cpu'")
    return name


def bf16_is_fast(device: str = "cpu") -> bool:
    """Whether bfloat16 autocast makes training faster on `device`: a CUDA GPU that supports bf16, or a CPU
    with bf16 units (Linux's avx512_bf16 or amx_bf16 flag). Other CPUs (AVX2 only) emulate bf16 in software:
    one `cpu` transformer step took 180 s instead of 4.8 s in fp32 on an AVX2 AMD EPYC (1 thread, measured)."""
    import torch
    kind = str(device).split(":")[0]
    if kind == "cuda":  # emulated bf16 (a T4, a V100) counts as not fast: those GPUs have fp16 units instead
        if not torch.cuda.is_available():
            return False
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 has no including_emulation, and reported native support only
            return torch.cuda.is_bf16_supported()
    if kind != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:  # not Linux: no cheap way to know, and fp32 is never the slow one
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def describe_device() -> str:
    import torch
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def machine_summary() -> str:
    """One line naming the machine, for benchmark and evaluation tables."""
    import torch
    cpu = platform.processor() or platform.machine()
    return (f"{platform.system()} {cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), device {describe_device()}")


def format_report(results: list[CheckResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{'ok ' if r.ok else 'FIX'}  {r.name:<12} {r.detail}")
        if not r.ok and r.fix:
            lines.append(f"     {'':<12} -> {r.fix}")
    bad = sum(not r.ok for r in results)
    lines.append("Everything is ready." if not bad else f"{bad} problem(s) above: apply the fixes, then run this again.")
    return "\n".join(lines)
