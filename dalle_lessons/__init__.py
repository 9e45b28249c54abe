"""Build DALL·E from Scratch: the package that assembles the course's small, real DALL·E."""
from .config import PRESETS, Preset, get_preset
from .paths import REPO_URL, data_dir

__version__ = "0.1.0"
__all__ = ["PRESETS", "Preset", "get_preset", "REPO_URL", "data_dir", "__version__"]
