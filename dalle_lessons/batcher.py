"""Concurrent image requests batched into one sampling call, on one worker thread (the images API's engine).

    batcher = Batcher(pipe, max_queue=64, max_batch=64)
    future = batcher.submit(Job(text_ids, n=3, seed=7, settings=settings))   # a concurrent.futures.Future
    future.result()                                                          # 3 PIL images, native size

Why batch: sampling is one transformer step per token for every row at once, and on a CPU a step for
64 rows costs little more than a step for one (`benchmarks/bench_server.py` measures the gain). So the
worker takes the oldest waiting request, waits a few milliseconds for more with the same sampling
settings (the `key`), and samples all their rows together, up to `max_batch` rows.

Batching never changes a picture: row k of a request draws from its own random stream,
`row_seed(seed, k)` (see `sampling.row_generators`), exactly as `TextToImage.generate(prompt, n, seed)`
does, so image k of seed s is the same alone, in a request of n = 10, or beside other people's requests.
Only sampling is shared: each request's tokens are decoded and CLIP-scored on their own, as a pipeline call
does, because a convolution's float rounding depends on the batch size (one pixel off by 1/255 otherwise).

The queue is bounded (`QueueFull` carries a retry-after estimate); a job whose client has gone is
dropped while it waits, or its images are discarded when they come (`abandon`); `begin_close` rejects
the waiting jobs (`ShuttingDown`) and lets the running batch finish and answer.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch
from PIL import Image

from .pipeline import MAX_BATCH, TextToImage
from .rerank import rerank_candidates
from .sampling import generate_image_tokens, row_generators

log = logging.getLogger("dalle_lessons.server")


class QueueFull(Exception):
    """The queue already holds `max_queue` requests; `retry_after` is a guess, in seconds, of when there is room."""

    def __init__(self, retry_after: int, queued: int, max_queue: int):
        super().__init__(f"the queue is full ({queued} requests waiting, at most {max_queue})")
        self.retry_after, self.queued, self.max_queue = retry_after, queued, max_queue


class ShuttingDown(Exception):
    """The server is stopping: a request that had not started is refused, not half-done."""


@dataclass(eq=False)
class Job:
    """One request: n images of one caption, image k from stream `row_seed(seed, k)`, each the CLIP-best of
    `rerank` candidates; for an edit, the top `keep_rows` token rows of `image` are kept."""

    text: torch.Tensor  # [T] the caption's ids
    n: int
    seed: int
    settings: dict  # temperature, top_k, top_p, guidance_scale: all four, already checked
    rerank: int = 1
    image: Image.Image | None = None  # edits: the picture at the model's native size
    keep_rows: int = 0
    future: Future = field(default_factory=Future)
    abandoned: bool = False

    @property
    def rows(self) -> int:
        """Rows this job adds to a sampling batch."""
        return self.n * self.rerank

    @property
    def key(self) -> tuple:
        """Jobs with the same key can share one sampling call (same settings, same prefix length)."""
        return tuple(sorted(self.settings.items())), self.rerank, self.keep_rows


def _settle(future: Future, result=None, error: BaseException | None = None) -> None:
    """Set a future's outcome unless it is already settled (cancelled by a client that left)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class Batcher:
    """A bounded queue of Jobs and the one thread that samples them, batched by key."""

    def __init__(self, pipe: TextToImage, max_queue: int = 64, max_batch: int = MAX_BATCH, wait: float = 0.005):
        for name, value, low, high in (("max_queue", max_queue, 1, 100_000), ("max_batch", max_batch, 1, MAX_BATCH)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
        if not isinstance(wait, (int, float)) or not 0 <= wait <= 10:
            raise ValueError(f"wait must be a number of seconds from 0 to 10, got {wait!r}")
        self.pipe, self.max_queue, self.max_batch, self.wait = pipe, max_queue, max_batch, float(wait)
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._running: list[Job] = []
        self._batch_seconds: float | None = None  # moving average, for retry-after
        self.counts = dict(jobs=0, images=0, batches=0, largest_batch=0, abandoned=0, rejected=0, failed=0)
        self._thread = threading.Thread(target=self._work, name="dalle-lessons-batcher", daemon=True)
        self._thread.start()

    # --- the request side (any thread) -------------------------------------------------------------

    def submit(self, job: Job) -> Future:
        """Queue `job`; raises QueueFull or ShuttingDown at once instead of waiting."""
        with self._cond:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                self.counts["rejected"] += 1
                raise QueueFull(self._retry_after(), len(self._queue), self.max_queue)
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def abandon(self, job: Job) -> None:
        """The client has gone: drop the job if it is still waiting, discard its images if it runs."""
        with self._cond:
            if job.abandoned or job.future.done() and not job.future.cancelled():
                return
            job.abandoned = True
            self.counts["abandoned"] += 1
            if job.future.cancel():  # not started yet
                try:
                    self._queue.remove(job)
                except ValueError:  # taken into a batch being collected: the worker skips it
                    pass

    def begin_close(self) -> None:
        """Refuse new jobs and reject every waiting one with ShuttingDown; the running batch finishes."""
        with self._cond:
            self._closing = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in waiting:
            _settle(job.future, error=ShuttingDown("the server is shutting down; this request was not started"))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish (after begin_close); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float | None = None) -> bool:
        self.begin_close()
        return self.join(timeout)

    @property
    def closing(self) -> bool:
        return self._closing

    def stats(self) -> dict:
        with self._cond:
            return dict(self.counts, queued=len(self._queue), running=len(self._running),
                        max_queue=self.max_queue, max_batch=self.max_batch)

    def _retry_after(self) -> int:
        """Seconds until the queue has room, about: the batches ahead of a new request times a batch's time."""
        batches = 1 + math.ceil(sum(job.rows for job in self._queue) / self.max_batch)
        return max(1, min(120, math.ceil(batches * (self._batch_seconds or 1.0))))

    # --- the worker thread ---------------------------------------------------------------------------

    def _next_batch(self) -> list[Job] | None:
        """The oldest waiting job and every waiting job with its key, up to max_batch rows (None: closed)."""
        with self._cond:
            while True:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return None
                first = self._queue.popleft()
                batch, rows = [first], first.rows
                deadline = time.monotonic() + self.wait
                while True:
                    for job in list(self._queue):
                        if job.key == first.key and rows + job.rows <= self.max_batch:
                            self._queue.remove(job)
                            batch.append(job)
                            rows += job.rows
                    remaining = deadline - time.monotonic()
                    if rows >= self.max_batch or remaining <= 0 or self._closing:
                        break
                    self._cond.wait(remaining)
                batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
                if batch:
                    self._running = batch
                    return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.perf_counter()
            try:
                results = self.run_batch(batch)
            except Exception as error:  # a bug or an exhausted machine: each job of the batch hears of it
                log.exception("a batch of %d request(s) failed", len(batch))
                self.counts["failed"] += len(batch)
                for job in batch:
                    _settle(job.future, error=error)
                results = None
            elapsed = time.perf_counter() - start
            with self._cond:
                self._running = []
                if results is not None:
                    for job, images in zip(batch, results):
                        if not job.abandoned:
                            _settle(job.future, images)
                    self.counts["jobs"] += len(batch)
                    self.counts["images"] += sum(job.n for job in batch)
                    self.counts["batches"] += 1
                    self.counts["largest_batch"] = max(self.counts["largest_batch"], len(batch))
                self._batch_seconds = elapsed if self._batch_seconds is None else 0.7 * self._batch_seconds + 0.3 * elapsed

    # --- the arithmetic: one sampling call for many requests ---------------------------------------

    @torch.no_grad()
    def run_batch(self, jobs: list[Job]) -> list[list[Image.Image]]:
        """Sample every job's rows together (jobs share one key) and return each job's n native-size images.

        Row k of a job draws from `row_seed(job.seed, k)`; candidate j of image k is row k * rerank + j,
        as in `TextToImage.generate_ranked`. Rows are sampled MAX_BATCH at a time (memory stays bounded).
        """
        pipe, device = self.pipe, self.pipe.device
        settings, rerank, keep = jobs[0].settings, jobs[0].rerank, jobs[0].keep_rows
        text = torch.cat([job.text.to(device).view(1, -1).expand(job.rows, -1) for job in jobs])
        streams = [g for job in jobs for g in row_generators(job.seed, job.rows, device)]
        prefix = None
        if keep:
            g = pipe.grid
            prefix = torch.cat([pipe.encode_image(job.image)[: keep * g].view(1, -1).expand(job.rows, -1)
                                for job in jobs])
        chunks = range(0, len(text), MAX_BATCH)
        tokens = torch.cat([generate_image_tokens(pipe.transformer, text[s:s + MAX_BATCH], generators=streams[s:s + MAX_BATCH],
                                                  prefix=None if prefix is None else prefix[s:s + MAX_BATCH], **settings)
                            for s in chunks])
        # Decoding and CLIP scoring run per request, as a call of the pipeline would: a convolution's float
        # rounding depends on the batch size, and a picture must not move by 1/255 with its neighbours.
        results, start = [], 0
        for job in jobs:
            rows = slice(start, start + job.rows)
            job_tokens, job_text = tokens[rows], text[rows]
            pixels = torch.cat([pipe.decode(job_tokens[s:s + MAX_BATCH]) for s in range(0, job.rows, MAX_BATCH)])
            if rerank > 1:
                pixels = rerank_candidates(pipe.reranker, pixels, job_text, per_group=rerank).chosen(pixels)
            results.append(pipe.to_pil(pixels))
            start += job.rows
        return results
