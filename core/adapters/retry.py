"""Retrying calls to a rate-limited service without doing anything twice.

Why this exists: the Custom Vision SDK (msrest over urllib3 2.x) retries GETs on its own but never POSTs, and
its own retries are invisible to the user. The adapter turns the SDK's retries off and retries here instead,
where every wait is reported ("rate limited, retrying in 2 s") and where the rule for a POST is explicit:

* **429** means the service refused the request before doing anything: repeat it after ``Retry-After``.
* **5xx, a timeout or a dropped connection** after the request was sent means the work may have been done.
  A call that is safe to repeat (a GET, or an upload the service de-duplicates) is repeated; any other call
  first runs its ``reconcile`` check (e.g. "list projects by name") and returns what that finds instead of
  creating it a second time. Without a reconcile check such a call is not repeated at all.
* Anything else (4xx) is an answer, not a hiccup: it is raised at once.

Waiting is ``asyncio.sleep`` between attempts, so cancelling the step stops the retries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class CallFailure:
    """What went wrong with one attempt, independent of the SDK that raised it."""

    status: int | None              # HTTP status; None when no answer came back
    code: str | None                # the service's error code, when its body had one
    message: str
    retry_after_s: float | None = None
    sent: bool = True               # False when the request surely never reached the service

    @property
    def transport(self) -> bool:
        return self.status is None

    @property
    def retryable(self) -> bool:
        return self.transport or self.status in RETRYABLE_STATUS

    def describe(self) -> str:
        if self.transport:
            return f"no answer ({self.message})"
        if self.status == 429:
            return "rate limited (HTTP 429)"
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status}{code}" + (f": {self.message}" if self.message else "")


class CallFailed(Exception):
    """Raised when an attempt failed for good: not retryable, or the retry budget is spent."""

    def __init__(self, failure: CallFailure, what: str, *, gave_up: bool = False, waited_s: float = 0.0) -> None:
        super().__init__(f"{what}: {failure.describe()}")
        self.failure, self.what, self.gave_up, self.waited_s = failure, what, gave_up, waited_s


@dataclass(frozen=True)
class RetryPolicy:
    budget_s: float = 600.0          # most seconds spent waiting for one call (rate limits, outages)
    base_s: float = 1.0              # first backoff when the service gave no Retry-After
    cap_s: float = 60.0              # longest backoff step of our own (Retry-After is obeyed as given)
    max_transport_failures: int = 5  # connection failures before giving up


async def call_with_retry(fn: Callable[[], T], *, what: str, classify: Callable[[BaseException], CallFailure | None],
                          policy: RetryPolicy, notify: Callable[[str], None], safe_to_repeat: bool,
                          reconcile: Callable[[], Awaitable[T | None]] | None = None) -> T:
    """Run the blocking ``fn`` in a thread until it succeeds, following the rules in the module docstring.

    ``classify`` turns an exception into a :class:`CallFailure`, or None for exceptions that are not about the
    call (bugs), which propagate unchanged.
    """
    waited = 0.0
    backoff_step = 0
    transport_failures = 0
    while True:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:  # noqa: BLE001 - classified below, unknown ones re-raised
            failure = classify(exc)
            if failure is None:
                raise
            error = exc
        if not failure.retryable:
            raise CallFailed(failure, what) from error
        if failure.transport:
            transport_failures += 1
            if transport_failures > policy.max_transport_failures:
                raise CallFailed(failure, what, gave_up=True, waited_s=waited) from error
        if failure.retry_after_s is not None:
            wait = max(failure.retry_after_s, 0.0)      # the service's word; the budget below bounds it
        else:
            wait = min(policy.base_s * (2 ** backoff_step), policy.cap_s)
            backoff_step += 1
        if waited + wait > policy.budget_s:
            raise CallFailed(failure, what, gave_up=True, waited_s=waited) from error
        may_have_happened = failure.status != 429 and failure.sent and not safe_to_repeat
        if may_have_happened and reconcile is None:
            raise CallFailed(failure, what) from error
        notify(f"{what}: {failure.describe()}; retrying in {wait:.3g} s")
        await asyncio.sleep(wait)
        waited += wait
        if may_have_happened:
            assert reconcile is not None
            found = await reconcile()
            if found is not None:
                notify(f"{what}: the earlier attempt had gone through; using its result")
                return found
