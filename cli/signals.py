"""SIGTERM and SIGINT as a polite stop for the long-running commands (watch, receive).

The handler takes no lock and starts no thread. It runs on the main thread between
any two bytecodes: an `Event.set()` there could wait for ever on a lock the main
thread holds inside its own `Event.wait()` (a SIGTERM to `receive` once went unheard
that way), and `Thread.start` takes threading's locks, which the main thread holds
while it starts copy and verify threads. It writes a byte to a pipe; a relay thread
calls `on_stop`. A second Ctrl-C stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress


@contextmanager
def stop_on_signals(on_stop: Callable[[], None]) -> Iterator[list[int]]:
    """Call `on_stop` (from a thread of ours) on SIGTERM or SIGINT; yields the signals seen."""
    received: list[int] = []
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def relay() -> None:
        while os.read(read_end, 64):  # a byte per signal; b"" once write_end is closed
            on_stop()

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)
        with suppress(BlockingIOError):  # a full pipe already holds a wake-up
            os.write(write_end, b"!")

    relayer = threading.Thread(target=relay, name="sneakernet-signals", daemon=True)
    relayer.start()
    try:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield received
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        os.close(write_end)
        relayer.join()  # every signal relayed: on_stop has run if one came
        os.close(read_end)
