"""N requests at a chosen concurrency, each worker thread with its own client (``tritonclient.http`` binds its
connections to one thread); refusals are counted by HTTP status, not raised. A ``stop`` event ends it early
(a thread cannot be cancelled: cancelling the step sets it)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from cvtriton_core.errors import UserError


@dataclass
class LoadOutcome:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)      # HTTP status (0: no answer) -> count
    wall_s: float = 0.0

    @property
    def throughput_rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s > 0 else 0.0


def run_load(make_client: Callable[[], Any], send: Callable[[Any], float], *, total: int, concurrency: int,
             stop: threading.Event, on_done: Callable[[int, float], None]) -> LoadOutcome:
    """``send(client)`` makes one request and returns its milliseconds; ``on_done(count, ms)`` after each."""
    outcome = LoadOutcome()
    lock = threading.Lock()
    issued = [0]

    def worker() -> None:
        client = make_client()
        try:
            while not stop.is_set():
                with lock:
                    if issued[0] >= total:
                        return
                    issued[0] += 1
                try:
                    ms = send(client)
                except UserError as exc:
                    with lock:
                        outcome.errors[getattr(exc, "http_status", None) or 0] += 1
                    continue
                with lock:
                    outcome.latencies_ms.append(ms)
                    done = len(outcome.latencies_ms) + sum(outcome.errors.values())
                on_done(done, ms)
        finally:
            client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="endpoint-test") as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    outcome.wall_s = time.perf_counter() - started
    return outcome
