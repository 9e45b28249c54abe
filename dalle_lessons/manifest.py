"""data/MANIFEST.json: the size and SHA-256 of every committed artefact in data/.

A checkpoint that arrives truncated, as a Git LFS pointer, or edited by hand loads as garbage or fails
deep inside safetensors; checking it against the manifest turns that into one clear sentence.

    python -m dalle_lessons data manifest     # rewrite it after retraining something in data/
    python -m dalle_lessons check             # verifies it, among the other checks
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .paths import data_dir

MANIFEST = "MANIFEST.json"
NOT_LISTED = {MANIFEST, "README.md"}  # the manifest itself, and prose


def _listed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in NOT_LISTED)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(folder: Path | None = None) -> dict:
    """{file name: {"bytes", "sha256"}} for every artefact in `folder` (default data/), cache excluded."""
    folder = Path(folder) if folder is not None else data_dir()
    return {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in _listed_files(folder)}


def write_manifest(folder: Path | None = None) -> Path:
    """Write MANIFEST.json for `folder` (default data/), atomically; returns its path."""
    folder = Path(folder) if folder is not None else data_dir()
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(build_manifest(folder), indent=2) + "\n")
    tmp.replace(path)
    return path


def manifest_problems(folder: Path | None = None) -> list[str]:
    """What differs between `folder` (default data/) and its MANIFEST.json, one sentence each; [] if nothing."""
    folder = Path(folder) if folder is not None else data_dir()
    path = folder / MANIFEST
    if not path.exists():
        return [f"{path} is missing: restore it from git, or write it with `python -m dalle_lessons data manifest`"]
    expected = json.loads(path.read_text())
    problems = []
    for name, entry in expected.items():
        file = folder / name
        if not file.exists():
            problems.append(f"{file} is missing: restore it from git (`git checkout -- data/{name}`)")
        elif file.stat().st_size != entry["bytes"]:
            hint = " (it looks like a Git LFS pointer: run `git lfs pull`)" if file.stat().st_size < 200 else ""
            problems.append(f"{file} has {file.stat().st_size:,} bytes, the manifest says {entry['bytes']:,}{hint}: "
                            f"restore it from git, or after retraining it run `python -m dalle_lessons data manifest`")
        elif file_sha256(file) != entry["sha256"]:
            problems.append(f"{file} differs from the one in the manifest (SHA-256): restore it from git, or "
                            "after retraining it run `python -m dalle_lessons data manifest`")
    return problems


def unlisted_files(folder: Path | None = None) -> list[str]:
    """Artefacts in `folder` (default data/) that its MANIFEST.json does not list."""
    folder = Path(folder) if folder is not None else data_dir()
    path = folder / MANIFEST
    listed = json.loads(path.read_text()) if path.exists() else {}
    return [p.name for p in _listed_files(folder) if p.name not in listed]
