"""data/MANIFEST.json: the size and SHA-256 of every committed artefact in data/.

A checkpoint that arrives truncated, as a Git LFS pointer, or edited by hand loads as garbage or fails
deep inside safetensors; checking it against the manifest turns that into one clear sentence. The same
sentences serve `check` (every file) and loading (`verify_shipped`, each shipped file as it is read).

    python -m dalle_lessons data manifest     # rewrite it after retraining something in data/
    python -m dalle_lessons check             # verifies it, among the other checks
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .paths import data_dir

MANIFEST = "MANIFEST.json"
NOT_LISTED = {MANIFEST, "README.md"}  # the manifest itself, and prose
LFS_POINTER = b"version https://git-lfs"
RESTORE = "restore it from git (`git checkout -- data/{name}`), or after retraining it run `python -m dalle_lessons data manifest`"

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256, so a file is hashed once


def _listed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in NOT_LISTED)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sniff(path: Path) -> str | None:
    """What a file obviously is instead of the artefact it should be (empty, a Git LFS pointer, a pickle),
    as a phrase with its fix; None when nothing is obviously wrong. Reads the first bytes only."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes: an interrupted copy or download): restore or re-create it"
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(LFS_POINTER):
        return "is a Git LFS pointer, not the file itself: run `git lfs pull`"
    if head[:1] == b"\x80" or head.startswith(b"PK\x03\x04"):
        return ("is a pickle / torch.save file, not safetensors: this package never loads pickle (it can run "
                "code); re-save the weights with safetensors.torch.save_file")
    return None


def file_problem(file: Path, entry: dict) -> str | None:
    """One sentence saying how `file` differs from its manifest entry {"bytes", "sha256"}; None if it matches."""
    name = file.name
    fix = RESTORE.format(name=name)
    if not file.exists():
        return f"{file} is missing: restore it from git (`git checkout -- data/{name}`)"
    size = file.stat().st_size
    if size != entry["bytes"]:
        what = sniff(file)  # an empty file, an LFS pointer or a pickle: its own fix, and a shorter line
        return f"{file} has {size:,} bytes, the manifest says {entry['bytes']:,}: " + (f"it {what}" if what else fix)
    key = (str(file.resolve()), size, file.stat().st_mtime_ns)
    digest = _verified.get(key) or file_sha256(file)
    if digest != entry["sha256"]:
        return f"{file} differs from the one in the manifest (SHA-256): {fix}"
    _verified[key] = digest
    return None


def _read(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({str(error)[:80]}): restore it from git, or rewrite it with "
                         "`python -m dalle_lessons data manifest`") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} holds a JSON {type(manifest).__name__}, not a manifest: restore it from git, or "
                         "rewrite it with `python -m dalle_lessons data manifest`")
    return manifest


def build_manifest(folder: Path | None = None) -> dict:
    """{file name: {"bytes", "sha256"}} for every artefact in `folder` (default data/), cache excluded."""
    folder = Path(folder) if folder is not None else data_dir()
    return {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in _listed_files(folder)}


def _write(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    return path


def write_manifest(folder: Path | None = None) -> Path:
    """Write MANIFEST.json for `folder` (default data/), atomically; returns its path."""
    folder = Path(folder) if folder is not None else data_dir()
    return _write(folder, build_manifest(folder))


def update_entries(paths: list[Path]) -> Path | None:
    """Record the new size and SHA-256 of these files of data/ that the manifest lists (after a deliberate
    retraining with --overwrite-shipped); other entries stay as they are. Returns the manifest's path."""
    folder = data_dir()
    if not (folder / MANIFEST).exists():
        return None
    manifest = _read(folder)
    for path in paths:
        path = Path(path)
        if path.name in manifest and path.exists() and path.resolve().parent == folder.resolve():
            manifest[path.name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return _write(folder, manifest)


def manifest_problems(folder: Path | None = None) -> list[str]:
    """What differs between `folder` (default data/) and its MANIFEST.json, one sentence each; [] if nothing."""
    folder = Path(folder) if folder is not None else data_dir()
    path = folder / MANIFEST
    if not path.exists():
        return [f"{path} is missing: restore it from git, or write it with `python -m dalle_lessons data manifest`"]
    try:
        expected = _read(folder)
    except ValueError as error:
        return [str(error)]
    return [problem for name, entry in expected.items() if (problem := file_problem(folder / name, entry))]


def shipped_entry(path: str | os.PathLike) -> dict | None:
    """The manifest entry of `path` when it is a file of data/ that MANIFEST.json lists, else None (a
    MANIFEST.json that is not valid JSON is a one-line ValueError naming the fix)."""
    path = Path(path)
    try:
        folder = data_dir()
    except FileNotFoundError:
        return None
    if path.resolve().parent != folder.resolve() or not (folder / MANIFEST).exists():
        return None
    return _read(folder).get(path.name)  # a damaged manifest is an error: it cannot vouch for any file


def verify_shipped(path: str | os.PathLike) -> None:
    """Raise a one-line ValueError when `path` is a shipped file of data/ whose size or SHA-256 is not the
    manifest's (a truncated, replaced or same-size corrupted file); files outside data/ pass untouched."""
    entry = shipped_entry(path)
    if entry is not None:
        problem = file_problem(Path(path), entry)
        if problem:
            raise ValueError(problem)


def unlisted_files(folder: Path | None = None) -> list[str]:
    """Artefacts in `folder` (default data/) that its MANIFEST.json does not list."""
    folder = Path(folder) if folder is not None else data_dir()
    path = folder / MANIFEST
    listed = _read(folder) if path.exists() else {}
    return [p.name for p in _listed_files(folder) if p.name not in listed]
