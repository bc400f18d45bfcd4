"""Run an iterator ahead in a background thread, so its work (video decoding, flow: native code that releases
the GIL) overlaps with the consumer's (CLIP on the frames already decoded).

    for item in ahead(iter_samples(...), size=64): ...

Exceptions raised by the iterator reach the consumer unchanged, at the point it would have seen them; a consumer
that stops early (or fails) stops the thread.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def ahead(items: Iterator[T], size: int = 32) -> Iterator[T]:
    """Yield ``items`` in order while a thread computes up to ``size`` of them in advance."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(("done", _DONE))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who raises it
            buffer.put(("error", error))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = buffer.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
