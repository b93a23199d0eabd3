"""A memo keyed on a tensor's identity, so an audit's thousands of releases embed the private data once.

An audit calls a method's real release code on the same two datasets thousands of times. Embedding the
images is a deterministic function of them (the sensitivity argument needs that anyway) and dominates the
cost; the noise and the ledger are what the audit must exercise every time. :class:`IdentityMemo` remembers
``fn(x)`` for a tensor ``x`` by *where its values live* (device, storage address, shape, strides, dtype) and
its version counter (bumped by any in-place write), so a fresh slice of the same rows hits, and a changed
tensor misses. It keeps a reference to every key tensor it holds, so that memory cannot be freed and reused
by another tensor while its entry exists; it holds at most ``max_entries`` (least recently used go first).

A tensor copied anew on every call (e.g. moved to a GPU inside the release) never hits: pass data that
already lives on the method's device.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import torch


def tensor_identity(x: torch.Tensor) -> tuple:
    """Where ``x``'s values live and its version: equal for views of the same unchanged memory."""
    return (str(x.device), x.dtype, tuple(x.shape), tuple(x.stride()), x.data_ptr(), x._version)


class IdentityMemo:
    """``memo(x)`` = ``fn(x)``, computed once per tensor identity (see the module docstring)."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], max_entries: int = 256) -> None:
        self.fn = fn
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[tuple, tuple[torch.Tensor, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, x: torch.Tensor) -> Any:
        key = tensor_identity(x)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        value = self.fn(x)
        self._entries[key] = (x, value)  # the reference keeps x's memory from being reused while cached
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()
