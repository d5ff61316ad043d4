"""Running core steps in a test and reading their events: ``collect`` (every event of a run), ``failures``
(its ``StepFailed`` events) and ``result_of`` (a finished step's result, or an assertion naming the failures).
Shared by the test folders' ``kit`` fixtures (pytest's importlib mode lets test modules import no conftest)."""

from __future__ import annotations

from typing import Any

from cvtriton_core.events import Event, StepFailed, StepFinished
from cvtriton_core.pipeline import RunContext, run_steps


async def collect(steps: list, run: RunContext) -> list[Event]:
    return [event async for event in run_steps(steps, run)]


def failures(events: list[Event]) -> list[StepFailed]:
    return [e for e in events if isinstance(e, StepFailed)]


def result_of(events: list[Event], step: str) -> Any:
    for event in events:
        if isinstance(event, StepFinished) and event.step == step:
            return event.result
    raise AssertionError(f"step {step} did not finish: {[(e.message, e.details[-800:]) for e in failures(events)]}")
