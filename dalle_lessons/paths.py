"""Where the course's data lives, found the same way from a clone, an editable install or Colab."""
from __future__ import annotations

import os
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


def cache_dir() -> Path:
    """Generated, reproducible files (rendered datasets, token caches): never committed."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
