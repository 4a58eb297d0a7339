"""What the benchmark scripts share."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No cyclic garbage collection in the measuring process while it measures.

    The client and the fakes are not what is measured, but a full collection in them stops
    every request in flight: seen in benchmarks/slack_http.py as a 190 ms pause of the client
    that landed on the measured server's p99. Like `timeit`, which turns collection off for
    the same reason. Memory is collected again afterwards."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
