"""Multi-GPU and multi-node training through ``torchrun``: process group, DDP, samplers, gathering.

``torchrun --nproc_per_node=G [--nnodes=M ...] -m mlrank.train ...`` starts one process per GPU and
tells each its place through the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
``init_distributed`` reads it and joins the process group (NCCL on GPUs, gloo on the CPU); without
torchrun (WORLD_SIZE unset or 1) it returns a single-process context and every helper here degrades to
the plain single-process behaviour, so the training loop has one code path.

Decisions:

* ``make_sampler`` always returns a ``DistributedSampler`` (with one replica in a single process): its
  order depends only on ``seed`` and the epoch given to ``set_epoch``, so a resumed run draws the same
  batches without saving sampler state, and one process and many share the same code. Pass the same
  seed on every rank (the config's seed, not a per-rank one).
* For evaluation the sampler pads the data set to a multiple of the world size by repeating its first
  samples, and hands rank r the samples r, r + W, r + 2W, ... ``all_gather_tensors(..., dataset_size=n)``
  undoes exactly that, so metrics count each sample once and in data-set order.
* ``autocast_dtype``: ``train.amp = "auto"`` means bf16 autocast on a GPU (no loss scaling needed, unlike
  fp16) and full fp32 on the CPU, where bf16 autocast is slow on most processors.
"""

from __future__ import annotations

import contextlib
import datetime

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and the device it uses."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set; start multi-process runs with torchrun")
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one), for code that holds no DistContext."""
    return _env_int("RANK", 0) == 0


def init_distributed(use_cuda: bool | None = None) -> DistContext:
    """Join torchrun's process group, or describe a single process when not started by torchrun.

    ``use_cuda``: None picks CUDA when available; False forces the CPU and gloo (for tests and
    CPU clusters).
    """
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    elif use_cuda and not torch.cuda.is_available():
        raise ValueError("use_cuda=True but torch sees no CUDA device")
    world_size = _env_int("WORLD_SIZE", default=1)
    if world_size < 1:
        raise ValueError(f"environment variable WORLD_SIZE must be at least 1, got {world_size}")
    if world_size == 1:
        local_rank = _env_int("LOCAL_RANK", default=0)
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        return DistContext(rank=0, world_size=1, local_rank=local_rank, device=device)

    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ValueError(f"environment variable {name} is not set; start multi-process runs with torchrun")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world_size - 1}")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend, store=attempt_store(rank, world_size), rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def attempt_store(rank: int, world_size: int) -> dist.Store:
    """The key-value store the process group forms over: torchrun's (its agent's when it hosts one,
    else rank 0's), its keys prefixed by torchrun's restart count.

    Without the prefix, processes restarted by ``torchrun --max-restarts`` read the addresses that the
    dead attempt's processes left in the agent's store and wait for them forever.
    """
    host, port = os.environ["MASTER_ADDR"], _env_int("MASTER_PORT")
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(host, port, world_size, is_master=not agent_hosts and rank == 0,
                          timeout=datetime.timedelta(minutes=30))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"mlrank/attempt_{attempt}", store)


def wrap_ddp(model: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    """The model on ``ctx.device``, wrapped in DistributedDataParallel when there are several processes.

    DDP copies rank 0's parameters and buffers to all ranks here, and averages gradients in backward.
    """
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (whose state dict has no ``module.`` prefix), or the model itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def make_sampler(dataset: Dataset, ctx: DistContext, shuffle: bool, seed: int) -> DistributedSampler:
    """This rank's share of ``dataset``; call ``sampler.set_epoch(epoch)`` before each training epoch."""
    return DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=False
    )


def _communication_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """One picklable object from every rank, in rank order (``[obj]`` in a single process)."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_gather_tensors(tensor: torch.Tensor, ctx: DistContext, dataset_size: int | None = None) -> torch.Tensor:
    """Every rank's rows (dim 0; lengths may differ) on every rank, on ``tensor``'s device.

    Without ``dataset_size`` the result is rank 0's rows, then rank 1's, and so on. With it, the rows
    are taken to come from ``make_sampler(..., shuffle=False)`` over a data set of that size: they are
    put back in data-set order and the sampler's padding is dropped, giving exactly ``dataset_size`` rows.
    """
    if tensor.dim() == 0:
        raise ValueError("all_gather_tensors needs a tensor with a leading sample dimension, got a scalar")
    if not ctx.distributed:
        if dataset_size is not None and tensor.shape[0] != dataset_size:
            raise ValueError(f"a single process holds {tensor.shape[0]} rows but dataset_size is {dataset_size}")
        return tensor
    shapes = gather_objects((tuple(tensor.shape[1:]), tensor.dtype), ctx)
    if len(set(shapes)) != 1:
        raise ValueError(f"ranks hold tensors of different trailing shapes or dtypes: {shapes}")
    device = _communication_device(ctx)
    # gloo has no bool collectives; uint8 carries the same values.
    local = tensor.detach().to(device=device, dtype=torch.uint8 if tensor.dtype == torch.bool else tensor.dtype)
    length = torch.tensor([local.shape[0]], device=device)
    lengths = [torch.empty_like(length) for _ in range(ctx.world_size)]
    dist.all_gather(lengths, length)
    rows_per_rank = [int(n) for n in lengths]
    padded = local.new_zeros((max(rows_per_rank), *local.shape[1:]))
    padded[: local.shape[0]] = local
    chunks = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(chunks, padded.contiguous())
    pieces = [chunk[:rows] for chunk, rows in zip(chunks, rows_per_rank)]
    if dataset_size is None:
        gathered = torch.cat(pieces)
    else:
        expected = math.ceil(dataset_size / ctx.world_size)
        if any(rows != expected for rows in rows_per_rank):
            raise ValueError(
                f"with dataset_size={dataset_size} and {ctx.world_size} ranks each rank should hold "
                f"{expected} rows (as make_sampler(shuffle=False) gives), got {rows_per_rank}"
            )
        # Row j of rank r is sample j * W + r.
        gathered = torch.stack(pieces, dim=1).reshape(expected * ctx.world_size, *local.shape[1:])[:dataset_size]
    return gathered.to(device=tensor.device, dtype=tensor.dtype)


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    """Leave the process group, if this process joined one."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device``, or None for full precision."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp32":
        return None
    raise ValueError(f"train.amp must be 'auto', 'bf16' or 'fp32', got {amp!r}")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``train.amp`` on ``device``, or a no-op for full precision."""
    dtype = autocast_dtype(amp, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
