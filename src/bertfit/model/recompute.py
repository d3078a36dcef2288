"""Keep fewer activations for backward: rebuild cheap ones from tensors autograd keeps anyway.

In a training step most memory goes to the activations autograd saves for backward. Two of
the largest are cheap to rebuild from others it saves regardless:

* the feed-forward block's GELU output [T, 4H], which the second linear layer keeps, while
  GELU keeps its input;
* the attention probabilities after dropout [B, N, L, L], which the product with the values
  keeps, while softmax keeps the probabilities before dropout and dropout its one-byte mask.

:func:`recompute_when_saved` makes autograd keep a recipe instead of such a tensor and run it in
backward: an elementwise pass, for a sixth less activation memory on long MRPC batches. The
results are bit-identical, since the recipe repeats the same operations on the same inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


class _Rebuild:
    """What autograd keeps in place of a tensor: how to make it again, and which view of it."""

    __slots__ = ("make", "size", "stride", "offset")

    def __init__(self, make: Callable[[], torch.Tensor], saved: torch.Tensor) -> None:
        self.make = make
        self.size, self.stride, self.offset = saved.size(), saved.stride(), saved.storage_offset()

    def tensor(self) -> torch.Tensor:
        return self.make().as_strided(self.size, self.stride, self.offset)


def _storage_address(target: torch.Tensor) -> int | None:
    """Where ``target``'s data lives, when autograd will save it and it can be rebuilt; None
    otherwise (no gradient, not contiguous, or a tracer's tensor without data)."""
    if not (torch.is_grad_enabled() and target.requires_grad and target.is_contiguous()):
        return None
    if torch.compiler.is_compiling():
        return None
    try:
        return target.untyped_storage().data_ptr()
    except RuntimeError:  # FakeTensor and friends (torch.export, torch.compile)
        return None


@contextlib.contextmanager
def recompute_when_saved(target: torch.Tensor, make: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Within the block, operations that save ``target`` (or a view of it) for backward save
    ``make`` instead, which backward calls to rebuild it.

    ``make`` must return a new tensor equal to ``target``, in the same contiguous layout, and
    must not capture ``target`` itself (which would keep it alive). Tensors that merely share
    nothing with ``target``'s storage, or a cast copy of it (autocast), are saved as usual.
    """
    storage = _storage_address(target)
    if storage is None:
        yield
        return
    dtype = target.dtype

    def pack(saved: torch.Tensor):
        if saved.dtype == dtype and saved.untyped_storage().data_ptr() == storage:
            return _Rebuild(make, saved)
        return saved

    def unpack(packed):
        return packed.tensor() if isinstance(packed, _Rebuild) else packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
