"""Keep what the Azure SDKs print off our terminal.

* ``azure-ai-ml`` prints one ``.`` per poll on **stdout** from its long-running-operation poller threads
  (``AzureMLPolling.update_status``), which would corrupt ``--json`` output and the wizard's screen.
  :func:`poller_lease` installs, while any such operation is alive, a stdout proxy that drops writes made by
  azure-core's poller threads (named ``LROPoller(...)``) and passes every other write through unchanged.
* ``azure.ai.ml`` attaches its own stderr handler at INFO ("Check: endpoint X exists"), and ``azure.identity``
  warnings reach Python's last-resort stderr handler. :func:`bridge_sdk_logs` replaces those with a handler
  that forwards WARNING and above to a callback (the running step's log), and nothing to the terminal.
* The model upload prints to **stderr** from the calling thread: :func:`muted_stderr` drops that thread's
  writes while it uploads.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import Any, Callable, Iterator

POLLER_THREAD_PREFIX = "LROPoller"
SDK_LOGGERS = ("azure", "azure.ai.ml", "azure.identity")   # azure.ai.ml does not propagate to "azure"

_lock = threading.Lock()
_leases = 0
_installed: "_DropPollerWrites | None" = None


def _poller_thread() -> bool:
    return threading.current_thread().name.startswith(POLLER_THREAD_PREFIX)


class _DropPollerWrites:
    """Passes writes through, except those of the threads ``dropped()`` says (poller threads by default)."""

    def __init__(self, target: Any, dropped: Callable[[], bool] = _poller_thread) -> None:
        self._target = target
        self._dropped = dropped

    def write(self, text: str) -> int:
        if self._dropped():
            return len(text)
        return self._target.write(text)

    def flush(self) -> None:
        if not self._dropped():
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def acquire() -> None:
    global _leases, _installed
    with _lock:
        _leases += 1
        if _installed is None or sys.stdout is not _installed:
            _installed = _DropPollerWrites(sys.stdout)
            sys.stdout = _installed   # type: ignore[assignment]


def release() -> None:
    global _leases, _installed
    with _lock:
        _leases = max(0, _leases - 1)
        if _leases == 0 and _installed is not None:
            if sys.stdout is _installed:
                sys.stdout = _installed._target
            _installed = None


_muted: set[int] = set()            # threads whose stderr writes are dropped (muted_stderr)


@contextlib.contextmanager
def muted_stderr() -> Iterator[None]:
    """Drop what this thread writes to stderr meanwhile (azure-ai-ml's upload prints colour codes there even
    with progress bars off); other threads' writes pass."""
    with _lock:
        if not isinstance(sys.stderr, _DropPollerWrites):
            sys.stderr = _DropPollerWrites(sys.stderr, lambda: threading.get_ident() in _muted)  # type: ignore
        _muted.add(threading.get_ident())
    try:
        yield
    finally:
        with _lock:
            _muted.discard(threading.get_ident())


def poller_lease(poller: Any) -> None:
    """Hold the stdout filter until ``poller`` (an azure-core ``LROPoller``) has finished polling."""
    acquire()
    released = threading.Event()

    def done(_polling_method: Any) -> None:
        if not released.is_set():
            released.set()
            release()

    poller.add_done_callback(done)


class _Bridge(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.sink: Callable[[str], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            text = record.getMessage().strip()
        except Exception:   # noqa: BLE001 - a malformed SDK log call must not break a step
            return
        if text:
            sink(text.splitlines()[0][:500])


_bridge = _Bridge()


def bridge_sdk_logs(sink: Callable[[str], None] | None) -> None:
    """Route the SDKs' WARNING+ records to ``sink`` (None: drop them); never to the terminal."""
    _bridge.sink = sink
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        if _bridge not in logger.handlers:
            logger.addHandler(_bridge)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
