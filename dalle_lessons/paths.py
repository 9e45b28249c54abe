"""Where the course's data lives, found the same way from a clone, an editable install or Colab."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The course repository; the Colab install cell of every notebook clones this URL (a test checks).
REPO_URL = "https://github.com/build-dalle-from-scratch/build-dalle-from-scratch"


def data_dir() -> Path:
    """The repository's `data/` folder (override with the DALLE_LESSONS_DATA environment variable)."""
    override = os.environ.get("DALLE_LESSONS_DATA")
    if override:
        return Path(override).expanduser().resolve()
    candidate = Path(__file__).resolve().parent.parent / "data"
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(
        f"cannot find the course's data/ folder (looked at {candidate}). Install the package from a "
        "clone with `pip install -e .`, or set DALLE_LESSONS_DATA to the path of data/."
    )


#: File types an image grid can be written as (what Pillow writes, by file extension).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _writable_folder(folder: Path, what: str) -> None:
    """Create `folder` if needed and write (then remove) a probe file in it: the one test that also catches
    read-only file systems and /proc, where permission bits say yes. Raises a one-line error naming the fix."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"cannot write {what}: {existing} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PermissionError(f"cannot write {what}: {reason} in {folder}; choose a folder you can write to") from None


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system of `folder` (or of its nearest existing parent) takes."""
    for candidate in (folder, *folder.parents):
        try:
            if candidate.exists():
                return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):  # a name too long to stat, or no pathconf here
            continue
    return 255


def _check_name_lengths(path: Path) -> Path:
    """`path`, unless one of its names is longer than the file system takes (a one-line ValueError instead
    of 'File name too long' echoing the whole path)."""
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in path.parts), default=0)
    if longest > 255 and longest > _name_max(path.parent):
        raise ValueError(f"cannot write {str(path)[:60]!r}...: a file or folder name of {longest} bytes is longer "
                         f"than this file system's limit of {_name_max(path.parent)}; choose a shorter name")
    return path


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] | None = IMAGE_SUFFIXES) -> Path:
    """Check, before any work, that an output file can be written at `path`: a known suffix (any, for
    `suffixes=None`), not a folder, a name the file system takes, in a folder that exists or can be created
    and is writable. Returns the path."""
    if not str(path).strip():
        raise ValueError("the output file name is empty: give one such as grid.png")
    path = _check_name_lengths(Path(path).expanduser())
    if path.is_dir() or str(path).endswith(os.sep):
        raise ValueError(f"{str(path)[:120]} is a folder: give a file name such as {path / 'grid.png'}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"cannot tell the file type of {str(path)[:120]!r}: end the name in one of "
                         f"{', '.join(suffixes)} (e.g. grid.png)")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"cannot write {path}: the file is read-only; choose another path")
    _writable_folder(path.parent, str(path))
    return path


def check_output_dir(path: str | os.PathLike) -> Path:
    """Check, before any work, that `path` is (or can become) a writable folder. Returns the path."""
    path = _check_name_lengths(Path(path).expanduser())
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder: give a folder path to write into")
    _writable_folder(path, f"into {path}")
    return path


def cache_dir() -> Path:
    """Generated, reproducible files (rendered datasets, token caches): never committed."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
