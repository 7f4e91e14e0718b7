"""A heartbeat for work without a progress bar (data preparation, model loading).

Long steps with a natural unit (training and evaluation batches) show tqdm bars; steps without
one (reading and tokenizing a corpus, building a vocabulary) print a line at least every
``every`` seconds on the main process, so a user never waits minutes without output.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator


@contextlib.contextmanager
def heartbeat(label: str, every: float = 10.0, enabled: bool = True) -> Iterator[None]:
    """Print ``label`` when it takes a while, then every ``every`` seconds until done."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            print(f"{label}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, daemon=True, name="mllb-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        took = time.perf_counter() - start
        if took >= every:
            print(f"{label}: done in {took:.0f} s", file=sys.stderr, flush=True)
