"""The images behind the images API's URLs: in memory, under unguessable names, bounded in count, bytes and age.

    store = ImageStore(max_images=1000, max_bytes=256 * 2**20, max_age=3600)
    name = store.put(png_bytes, "png")      # e.g. 'kq3...Xw.png': 32 random URL-safe characters
    store.get(name)                         # StoredImage(data, media_type), or None once evicted

Names come from `secrets.token_urlsafe` (192 random bits), so a URL is a capability: whoever holds it
may fetch the image, nobody can guess one. Nothing touches the filesystem, and `get` accepts only a
name of exactly that shape, so a path such as '../../pyproject.toml' can never reach a file. The oldest
images are evicted first when a bound is passed; an image older than `max_age` seconds is gone (like
OpenAI's URLs, which expire after an hour).
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
ID_BYTES = 24  # token_urlsafe(24): 32 characters, 192 random bits
NAME = re.compile(r"[A-Za-z0-9_-]{32}\.(png|jpeg|webp)")


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    media_type: str
    created: float  # the store's clock when it was put


class ImageStore:
    """A thread-safe, bounded map from random names to encoded images (oldest evicted first)."""

    def __init__(self, max_images: int = 1000, max_bytes: int = 256 * 2**20, max_age: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        for name, value in (("max_images", max_images), ("max_bytes", max_bytes), ("max_age", max_age)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.max_images, self.max_bytes, self.max_age = int(max_images), int(max_bytes), float(max_age)
        self._clock = clock
        self._images: OrderedDict[str, StoredImage] = OrderedDict()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()
        self.evicted = 0  # images dropped for a bound or their age, since the start

    def put(self, data: bytes, extension: str = "png") -> str:
        """Keep `data` and return its new name ('<32 random characters>.<extension>')."""
        if extension not in MEDIA_TYPES:
            raise ValueError(f"unknown image extension {extension!r}: choose one of {', '.join(MEDIA_TYPES)}")
        if len(data) > self.max_bytes:
            raise ValueError(f"an image of {len(data):,} bytes is larger than the store's max_bytes {self.max_bytes:,}")
        name = f"{secrets.token_urlsafe(ID_BYTES)}.{extension}"
        with self._lock:
            now = self._clock()
            self._expire(now)
            while self._images and (len(self._images) >= self.max_images or self._bytes + len(data) > self.max_bytes):
                self._drop_oldest()
            self._images[name] = StoredImage(bytes(data), MEDIA_TYPES[extension], now)
            self._bytes += len(data)
        return name

    def get(self, name: str) -> StoredImage | None:
        """The image called `name`, or None (unknown, evicted, expired, or not a name this store makes)."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            return None
        with self._lock:
            self._expire(self._clock())
            return self._images.get(name)

    def _expire(self, now: float) -> None:
        while self._images and now - next(iter(self._images.values())).created > self.max_age:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, image = self._images.popitem(last=False)
        self._bytes -= len(image.data)
        self.evicted += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._images)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes
