"""Fitting a process for thousands of connections: the gateway's, and the benchmark's crowds
and the tests that play them (file descriptors, large allocations, the garbage collector)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
from collections.abc import Iterator

_GC_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def raise_open_files_limit() -> None:
    """Each connection is a file descriptor; the usual soft limit (1024) is far too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# glibc's mallopt parameter: allocations this large get pages of their own (mmap).
_M_MMAP_THRESHOLD = -3
_LARGE_ALLOCATION_BYTES = 256 * 1024


def return_large_allocations() -> None:
    """Results of megabytes come and go (read from Redis, sent, dropped). glibc raises its mmap
    threshold after the first such block is freed, so the later ones come from the heap, whose
    freed middle is never given back: a gateway that once held 128 MiB of results kept its peak
    RSS for good. A fixed threshold gives every large block pages of its own, returned when it
    is freed; a syscall pair per block of megabytes costs nothing next to copying it. Linux
    with glibc only; elsewhere nothing is changed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _LARGE_ALLOCATION_BYTES)


@contextlib.contextmanager
def tuned_collector() -> Iterator[None]:
    """The cyclic garbage collector of a process that holds many connections (the gateway, the
    benchmark's crowds). Every open connection or waiting request holds objects for as long as it
    lasts, so with thousands of them the collector's full passes walk tens of thousands of live
    objects, again and again, each holding the event loop: collected less often, they cost a few
    percent of the CPU, not a quarter or more."""
    thresholds = gc.get_threshold()
    gc.freeze()  # what was there before (start-up's imports) is never garbage
    gc.set_threshold(_GC_THRESHOLD, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
