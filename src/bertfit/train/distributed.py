"""Data-parallel training across processes started by ``torchrun``, on PyTorch's own engine.

``torchrun --nproc-per-node N -m bertfit train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment.
:func:`init_from_env` joins them into one process group (``gloo`` on CPU, ``nccl`` on CUDA) and
every :class:`~bertfit.train.trainer.Trainer` then asks :func:`current` who it is.

How the work is split, so that N processes with per-process batch ``B`` train exactly as one
process with batch ``N * B`` (and gradient accumulation over ``k`` micro-batches exactly as one
batch ``k`` times larger):

* Every process builds the same length-grouped order of *global* batches of
  ``batch_size * grad_accum_steps * world_size`` examples (seeded by seed and epoch).
* :func:`shard_batch` deals each global batch into ``world_size * grad_accum_steps`` slots,
  interleaved (``batch[slot::slots]``) so that every slot holds a similar mix of lengths.
* Each micro-batch's mean loss is weighted by ``len(micro) / len(global batch) * world_size``:
  DistributedDataParallel averages gradients over processes, so the update is the gradient of
  the mean loss over the global batch, also when the last batch of an epoch is short and the
  slots differ in size.

Only rank 0 writes files and prints; the others train and evaluate alongside it.

Collectives run on the training device, with one backend per job: ``nccl`` on CUDA, ``gloo``
on the CPU. NCCL reduces CUDA tensors only, so every tensor collective here takes the device
explicitly (the trainer passes its own), and :func:`check_device` refuses a trainer whose device
the group cannot reduce on. The alternative, a group with a backend for each device
(``cpu:gloo,cuda:nccl``), was not chosen:

* it opens a second set of connections between all processes, and on several machines gloo
  needs its own network set-up (``GLOO_SOCKET_IFNAME``): one more way for a job to fail;
* what it saves is small: the tensors reduced here are a few numbers per step (the loss and the
  stop flag) or per checkpoint (its outcome); the step already waits for the GPU when it reads
  the loss (``loss.item()``), so reducing on the GPU adds a copy of 16 bytes each way, not a
  new stall;
* object collectives (the random generators gathered into a checkpoint) and ``barrier`` pick
  the group's device themselves: the current CUDA device, which :func:`init_from_env` sets to
  ``LOCAL_RANK``'s and binds to the group (``device_id``), so they need no CPU backend either.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bertfit.errors import ConfigError
from bertfit.model.classifier import BertClassifier


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job: ``rank`` of ``world_size`` (1 when alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether there are other processes to synchronise with."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process job (``torchrun`` sets these)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: torch.device | str) -> str:
    """The collective backend for a device type: ``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(device: torch.device | str = "cpu") -> DistributedContext:
    """Join the process group that ``torchrun`` describes (a no-op for a single process).

    On CUDA each process takes the GPU of its ``LOCAL_RANK``, and the group is bound to it
    (``device_id``), so object collectives and ``barrier`` use that GPU too.
    """
    if not launched_by_torchrun():
        return current()
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process")
    warning = restart_warning(os.environ)
    if warning and os.environ.get("RANK") == "0":
        print(f"warning: {warning}", file=sys.stderr)
    if not dist.is_initialized():
        backend = backend_for(device)
        if backend == "nccl":
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(local)
            dist.init_process_group(backend=backend, device_id=local)
        else:
            dist.init_process_group(backend=backend)
    return current()


def restart_warning(environ) -> str | None:
    """Why a job that ``torchrun`` restarts may fail to reconnect, or None.

    By default ``torchrun``'s agent shares its rendezvous store with the workers, and the
    workers' process group keeps its keys there without a per-attempt prefix: after a restart
    the new workers can read the addresses of the dead ones and fail to connect ("Connection
    refused", or a hang). PyTorch's own opt-out, ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in
    ``torchrun``'s environment, gives each attempt a fresh store (pytorch/pytorch#135712;
    seen with PyTorch 2.13 and ``gloo``). It must be set for the launcher, not the workers,
    so bertfit can only say so.
    """
    restarts = int(environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    if restarts > 0 and environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return (
            "torchrun --max-restarts with its shared rendezvous store: restarted workers may "
            "fail to reconnect; start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"
        )
    return None


def check_device(device: torch.device | str) -> None:
    """Raise :class:`ConfigError` unless the job's collectives can run on ``device``.

    Nothing to check for a single process. Under ``nccl`` (CUDA only) the device must be this
    process's GPU: the one of its ``LOCAL_RANK``, made current by :func:`init_from_env`.
    """
    if not current().enabled or dist.get_backend() != "nccl":
        return
    device = torch.device(device)
    if device.type != "cuda":
        raise ConfigError(
            f"trainer.device is {device.type}, but this job's process group is nccl, which "
            "reduces CUDA tensors only; train on cuda, or start the job on CPUs (gloo)"
        )
    if device.index is not None and device.index != torch.cuda.current_device():
        raise ConfigError(
            f"trainer.device is {device}, but under torchrun each process trains on the GPU "
            f"of its LOCAL_RANK (here cuda:{torch.cuda.current_device()}); give cuda or auto"
        )


def current() -> DistributedContext:
    """This process's place in the job; a single process when no group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def shutdown(wait_for_others: bool = False) -> bool:
    """Leave the process group, if one was joined; returns whether one was.

    ``wait_for_others`` first waits until every process has finished (a barrier), so that no
    process tears its connections down while another still writes and talks to it. Only a
    process that succeeded should wait: one that failed leaves at once, and ``torchrun`` then
    stops the others.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if wait_for_others:
        dist.barrier()
    dist.destroy_process_group()
    return True


def exit_process(code: int) -> NoReturn:
    """End a ``torchrun`` worker with ``code`` at once, skipping the interpreter's teardown.

    Why: DistributedDataParallel and ``fully_shard`` keep references to the ``gloo`` process
    group, so :func:`shutdown` cannot free it, and its worker threads live on until the
    interpreter tears itself down. Freed then, a worker thread that needs the GIL on its way
    out aborts the whole process ("terminate called without an active exception", PyTorch
    issue 38228), and ``torchrun`` reports a finished job as failed. Every file is written
    and closed by now; only the standard streams and logging buffers need flushing.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken pipe has nothing to flush
            stream.flush()
    logging.shutdown()
    os._exit(code)


def shard_batch(batch: list[int], rank: int, world_size: int, accum_steps: int) -> list[list[int]]:
    """This rank's ``accum_steps`` micro-batches of a global batch (some may be empty).

    Slot ``k * world_size + rank`` is micro-batch ``k`` of ``rank``; the global batch is dealt
    round-robin into the slots, so slot sizes differ by at most one.
    """
    slots = world_size * accum_steps
    return [batch[k * world_size + rank :: slots] for k in range(accum_steps)]


@dataclass
class MicroBatch:
    """One of this process's micro-batches of a global batch, as :func:`micro_batches` yields it.

    ``indices`` are its examples; ``weight`` is their share of the global batch (0 for the
    stand-in of an empty slot); ``sync`` is the gradient-sync context to run its backward in.
    """

    indices: list[int]
    weight: float
    sync: contextlib.AbstractContextManager
    world_size: int = 1

    def weighted(self, loss: torch.Tensor) -> torch.Tensor:
        """The micro-batch's mean ``loss`` as its part of the global batch's mean loss."""
        return loss if self.weight == 1.0 else loss * self.weight

    def for_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """The (weighted) loss to differentiate: DDP averages gradients over processes, so
        scale by the process count to make their sum the gradient of the global mean."""
        return loss * self.world_size if self.world_size > 1 else loss


def micro_batches(
    batch: list[int], context: DistributedContext, accum_steps: int, model: torch.nn.Module
) -> Iterator[MicroBatch]:
    """This process's micro-batches of the global ``batch``, weighted and with their sync.

    Gradients are reduced between processes only on the last one (see :func:`gradient_sync`).
    A short last batch can leave a slot empty: alone, it is skipped; in a job the collectives
    still need this process's (zero) gradients, so the slot runs one example with weight 0.
    """
    slots = shard_batch(batch, context.rank, context.world_size, accum_steps)
    for k, indices in enumerate(slots):
        weight = len(indices) / len(batch)
        if not indices:
            if not context.enabled:
                continue
            indices = batch[:1]
        sync = gradient_sync(model, k == accum_steps - 1)
        yield MicroBatch(indices, weight, sync, context.world_size)


def all_reduce_sum(values: list[float], *, device: torch.device | str) -> list[float]:
    """Element-wise sum over all processes (the values themselves when alone).

    ``device`` is the training device: the group's backend must reduce tensors there (see
    the module docstring); there is no default, so no caller can leave it on the CPU.
    """
    if not current().enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_flag(flag: bool, *, device: torch.device | str) -> bool:
    """Rank 0's ``flag`` on every process (used to agree on the outcome of a rank-0 write);
    ``device`` as for :func:`all_reduce_sum`."""
    if not current().enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def gather_objects(value) -> list:
    """Every process's ``value`` (plain data such as RNG state tensors), on every process.

    An object collective: PyTorch serialises through the group's own device (the current
    GPU under ``nccl``, bound by :func:`init_from_env`).
    """
    context = current()
    if not context.enabled:
        return [value]
    values: list = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


def broadcast_object(value):
    """Rank 0's ``value`` (plain data) on every process: a decision one process makes for all.

    An object collective, on the group's own device like :func:`gather_objects`.
    """
    if not current().enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process (nothing to wait for when alone); under ``nccl`` on the GPU the
    group is bound to (see :func:`init_from_env`)."""
    if current().enabled:
        dist.barrier()


def wrap_model(model: torch.nn.Module, strategy: str = "ddp") -> torch.nn.Module:
    """The module to train with: ``model`` itself when alone, else wrapped for the job.

    ``ddp``: DistributedDataParallel (every process holds the whole model, gradients are
    averaged). ``fsdp``: ``fully_shard`` on every encoder layer and on the whole model, so
    parameters, gradients and optimizer state are split between processes (for encoders that
    do not fit one device); it changes ``model`` in place and returns it.
    """
    context = current()
    if not context.enabled:
        return model
    if strategy == "fsdp":
        return _fully_shard(model)
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _fully_shard(model: torch.nn.Module) -> torch.nn.Module:
    try:
        from torch.distributed.fsdp import fully_shard  # ~0.6 s to import: only FSDP runs pay
    except ImportError:  # PyTorch before 2.6
        raise ConfigError("trainer.parallel=fsdp needs PyTorch 2.6 or later") from None
    # One unit per transformer layer keeps at most one layer gathered at a time.
    for layer in getattr(getattr(model, "encoder", None), "layers", []):
        fully_shard(layer)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``fully_shard`` split ``model``'s parameters between processes."""
    try:
        from torch.distributed.fsdp import FSDPModule  # see _fully_shard
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Reduce gradients between processes only on a step's last micro-batch.

    The earlier micro-batches of gradient accumulation just add to the local gradients
    (DDP's ``no_sync``, FSDP's ``set_requires_gradient_sync(False)``); the last backward then
    reduces the sum once.
    """
    if hasattr(model, "no_sync") and not sync:
        with model.no_sync():
            yield
        return
    if is_sharded(model):
        model.set_requires_gradient_sync(sync)
    yield


def _state_dict_options(**options):
    # only sharded (FSDP) models need it, and it takes ~0.6 s to import
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **options)


def model_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights, unsharded (a collective under FSDP: every process calls it;
    only rank 0 receives them then)."""
    if not is_sharded(model):
        return model.state_dict()
    # only sharded (FSDP) models need it, and it takes ~0.6 s to import
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_state_dict_options(cpu_offload=True))


def optimizer_state_dict(model: torch.nn.Module, optimizer) -> dict:
    """The optimizer's state, unsharded (a collective under FSDP, like :func:`model_state_dict`)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    # only sharded (FSDP) models need it, and it takes ~0.6 s to import
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_state_dict_options(cpu_offload=True))


def load_model_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load whole (unsharded) weights; under FSDP each process keeps its own shard."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    # only sharded (FSDP) models need it, and it takes ~0.6 s to import
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_state_dict_options())


def load_optimizer_state_dict(model: torch.nn.Module, optimizer, state: dict) -> None:
    """Load an optimizer state written by :func:`optimizer_state_dict`."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    # only sharded (FSDP) models need it, and it takes ~0.6 s to import
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_state_dict_options())


def gathered_model(model: torch.nn.Module) -> torch.nn.Module:
    """A module holding the whole model, to save: ``model`` itself unless it is sharded.

    Under FSDP every process calls it; rank 0 gets an unsharded CPU copy of the
    :class:`BertClassifier` (the others get ``model`` back, to ignore).
    """
    if not is_sharded(model):
        return model
    state = model_state_dict(model)
    if not current().is_main:
        return model
    with torch.random.fork_rng(devices=[]):  # building a module draws; the run must not notice
        copy = BertClassifier(
            model.config, model.num_classes, model.dropout_rate, model.problem_type
        )
    copy.load_state_dict(state)
    return copy
