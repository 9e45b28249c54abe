"""More than one process: the few helpers `train dalle` needs to run under torchrun with DistributedDataParallel.

    torchrun --nproc_per_node 2 -m dalle_lessons train dalle --preset cpu --out runs      # one machine
    torchrun --nnodes 2 --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
             --nproc_per_node 8 -m dalle_lessons train dalle --preset colab --out runs   # on each of 2 machines

torchrun starts one process per GPU (or per CPU share) and tells each its RANK, LOCAL_RANK and WORLD_SIZE
through environment variables; `setup` joins them into one process group (gloo on CPUs, nccl on GPUs).
Every process draws the same global batch of B pairs from the same seeded generator and trains on its
own slice of B / world_size (`shard`); DistributedDataParallel averages the gradients, so each update is
the one a single process would make on the whole batch (up to float rounding). Only rank 0 prints and
writes files. `launch` starts N local processes from Python (a notebook, a test) without torchrun.
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

#: torchrun's environment variables, read by `world_from_env`
ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among `world_size` processes, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owns_group: bool = False  # `setup` created the process group, so `cleanup` destroys it

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, validates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_from_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun sets them; (0, 0, 1) outside torchrun."""
    def read(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value.strip() else default
        except ValueError:
            raise ValueError(f"{name}={value[:20]!r} is not a number: torchrun sets it; unset it to run as one "
                             "process") from None
    world = read("WORLD_SIZE", 1)
    rank, local_rank = read("RANK", 0), read("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} WORLD_SIZE={world}: a rank runs from 0 to WORLD_SIZE - 1; launch with "
                         "torchrun, which sets both, or unset them to run as one process")
    return rank, local_rank, world


def check_batch(batch_size: int, world_size: int, flag: str = "--batch-size") -> int:
    """Each process's share of a global batch; a batch that does not split evenly is refused with the fix."""
    if batch_size % world_size:
        divisors = [d for d in range(1, min(batch_size, 64) + 1) if batch_size % d == 0]
        raise ValueError(f"a batch of {batch_size} does not split evenly over {world_size} processes: run torchrun "
                         f"with --nproc_per_node (times --nnodes) dividing {batch_size} ({', '.join(map(str, divisors))}), "
                         f"or choose {flag} a multiple of {world_size} (e.g. {flag} "
                         f"{max(world_size, batch_size // world_size * world_size)})")
    return batch_size // world_size


def setup(device: str) -> Context:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA, each rank on GPU LOCAL_RANK); one process
    outside torchrun. `device` is an already resolved device ('cpu', 'cuda', 'cuda:N')."""
    rank, local_rank, world = world_from_env()
    kind = torch.device(device).type
    if world == 1:
        return Context(device=device)
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: more than one process needs 'cpu' (gloo) or 'cuda' (nccl)")
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} GPU(s); run "
                             f"torchrun with --nproc_per_node {torch.cuda.device_count()} or fewer")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise ValueError(f"WORLD_SIZE={world} but {' and '.join(missing)} unset: launch with torchrun (or "
                             "dalle_lessons.distributed.launch), which sets them")
        dist.init_process_group("nccl" if kind == "cuda" else "gloo", rank=rank, world_size=world)
    elif dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError(f"the process group already set up has rank {dist.get_rank()} of {dist.get_world_size()}, "
                         f"but RANK/WORLD_SIZE say {rank} of {world}")
    return Context(rank, world, local_rank, device, owns)


def shard(ctx: Context, batch_size: int) -> slice:
    """This process's slice of a global batch: rank r takes items [r * b, (r + 1) * b), b = batch_size / world."""
    share = check_batch(batch_size, ctx.world_size)
    return slice(ctx.rank * share, (ctx.rank + 1) * share)


def average(ctx: Context, value: torch.Tensor) -> torch.Tensor:
    """The mean of `value` over every process (a collective: every rank calls it at the same point)."""
    value = value.detach().float().clone()
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return value


def main_first(ctx: Context, fn: Callable[[], Any]) -> Any:
    """`fn()` on rank 0 first, then on each other machine's first process, then on every other process: rank 0
    fills a cache (data/cache/) that the others then read instead of racing to write the same file, and
    each further machine fills its own if its disk is not shared. A failure stops every rank, none waits."""
    if not ctx.distributed:
        return fn()
    turn = 0 if ctx.is_main else 1 if ctx.local_rank == 0 else 2
    result = None
    for phase in range(3):
        failure = None
        if turn == phase:
            try:
                result = fn()
            except Exception as error:  # re-raised below, once every rank knows
                failure = error
        failed = torch.tensor([float(failure is not None)], device=ctx.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failure is not None:
            raise failure
        if failed.item():
            raise RuntimeError("another process failed while preparing the data (its error is printed above)")
    return result


def barrier(ctx: Context) -> None:
    """Wait here until every process arrives (e.g. while rank 0 writes a file the others will read)."""
    if ctx.distributed:
        dist.barrier()


def cleanup(ctx: Context) -> None:
    """Leave the process group, if `setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """The model to train with: DistributedDataParallel over the process group, or the model itself alone."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [torch.device(ctx.device).index] if torch.device(ctx.device).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def refuse_multi_process(what: str, why: str) -> None:
    """Raise if launched by torchrun with more than one process: `what` trains in one process, for `why`."""
    if world_from_env()[2] > 1:
        raise ValueError(f"{what} runs in one process ({why}): run it without torchrun")


def free_port() -> int:
    """A TCP port nobody listens on now, for MASTER_PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, nprocs: int, port: int, threads: int, fn: Callable, args: tuple, kwargs: dict,
            results) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nprocs),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": str(threads)})
    torch.set_num_threads(threads)
    try:
        results.put((rank, True, fn(*args, **kwargs)))
    except BaseException as error:  # reported to the parent, which raises it with the rank named
        results.put((rank, False, f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=-3)}"))


def launch(fn: Callable, nprocs: int, *args: Any, threads: int = 1, timeout: float = 600, **kwargs: Any) -> list:
    """Run `fn(*args, **kwargs)` in `nprocs` fresh local processes joined as one torchrun-style group (what
    `torchrun --nproc_per_node N` does, from Python: a notebook or a test). Returns each rank's result.

    `fn` and its arguments travel by pickle to the new processes, so `fn` must be importable (a package
    function such as `train_dalle.train_dalle`, not one defined in a notebook). Each process uses
    `threads` CPU threads. A rank that fails raises here, with its error.
    """
    import multiprocessing as mp
    import queue
    if nprocs < 1:
        raise ValueError(f"nprocs={nprocs}: launch at least one process")
    context = mp.get_context("spawn")
    results = context.Queue()
    port = free_port()
    processes = [context.Process(target=_worker, args=(rank, nprocs, port, threads, fn, args, kwargs, results))
                 for rank in range(nprocs)]
    for process in processes:
        process.start()
    answers: dict[int, tuple[bool, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(answers) < nprocs:
            try:
                rank, ok, value = results.get(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                # A process that died without answering (killed, or failed while starting: see its stderr) never
                # will: say so now instead of waiting out the timeout. An answer sent just before exiting is
                # already in the queue, so the get above has taken it.
                gone = [rank for rank, process in enumerate(processes)
                        if rank not in answers and process.exitcode is not None and results.empty()]
                if gone:
                    raise RuntimeError(f"rank {gone[0]} of {nprocs} exited with code {processes[gone[0]].exitcode} "
                                       "without an answer (its error, if any, is on the console's stderr)") from None
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{nprocs - len(answers)} of {nprocs} processes gave no answer in "
                                       f"{timeout:.0f} s") from None
                continue
            answers[rank] = (ok, value)
            if not ok:  # the others may wait forever for the failed one in a collective
                break
    finally:
        for process in processes:
            process.join(timeout=5 if len(answers) == nprocs else 0.1)
            if process.is_alive():
                process.terminate()
                process.join()
    failed = sorted(rank for rank, (ok, _) in answers.items() if not ok)
    if failed:
        raise RuntimeError(f"rank {failed[0]} of {nprocs} failed: {answers[failed[0]][1]}")
    return [answers[rank][1] for rank in range(nprocs)]
