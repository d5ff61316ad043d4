"""The pipeline: event order, failures as one line, cancellation that closes resources, thread-safe emit."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

import pytest

from cvtriton_core.errors import UserError
from cvtriton_core.events import LogLine, Progress, StepFailed, StepFinished, StepStarted
from cvtriton_core.pipeline import RunContext, StepContext, run_steps
from cvtriton_core.redact import register_secret
from cvtriton_core.settings import Settings


@dataclass(frozen=True)
class Done:
    summary: str


class Counting:
    def __init__(self, name: str, fail: Exception | None = None) -> None:
        self.name, self.title, self.fail = name, f"Step {name}", fail

    async def run(self, ctx: StepContext) -> Done:
        for i in range(3):
            ctx.progress("working", done=i + 1, total=3)
        ctx.log("a log line", source="test")
        if self.fail:
            raise self.fail
        ctx.state.set(**{f"{self.name}_value": 42})
        return Done(summary=f"{self.name} ok")


async def collect(steps, run):
    return [event async for event in run_steps(steps, run)]


@pytest.fixture
def run(tmp_path):
    return RunContext.create(Settings({}), tmp_path)


async def test_events_in_order_and_state_saved(run, tmp_path):
    events = await collect([Counting("a"), Counting("b")], run)
    kinds = [(e.step, e.kind) for e in events]
    assert kinds[0] == ("a", "started") and kinds[-1] == ("b", "finished")
    assert [k for s, k in kinds if s == "a"] == ["started", "progress", "progress", "progress", "log", "finished"]
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].fraction == 1.0 and progress[0].done == 1 and progress[0].total == 3
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert finished[0].summary == "a ok" and finished[0].result == Done("a ok")
    reloaded = RunContext.create(Settings({}), tmp_path).state
    assert reloaded.get("b_value") == 42 and reloaded.step_status("a") == "done"


async def test_user_error_stops_pipeline_with_one_line(run):
    events = await collect([Counting("a", UserError("the folder is empty", "add images")), Counting("b")], run)
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert len(failed) == 1 and failed[0].message == "the folder is empty — add images"
    assert failed[0].exit_code == 2
    assert not any(e.step == "b" for e in events)
    assert run.state.step_status("a") == "failed"


async def test_unexpected_error_is_one_line_with_details(run):
    events = await collect([Counting("a", RuntimeError("boom\nsecond line"))], run)
    failed = events[-1]
    assert isinstance(failed, StepFailed) and "\n" not in failed.message
    assert "RuntimeError: boom" in failed.message and "Traceback" in failed.details
    assert failed.exit_code == 1


async def test_secrets_are_redacted_in_events(run):
    register_secret("sekrit-value-123")

    class Leaky:
        name, title = "leak", "Leaky"

        async def run(self, ctx):
            ctx.log("key=sekrit-value-123 in a line")
            raise UserError("bad key sekrit-value-123", "fix it")

    events = await collect([Leaky()], run)
    text = " ".join(str(e.to_dict()) for e in events)
    assert "sekrit-value-123" not in text and "••••••" in text


async def test_cancellation_closes_resources_and_marks_state(run):
    closed = asyncio.Event()
    started = asyncio.Event()

    class Slow:
        name, title = "slow", "Slow"

        async def run(self, ctx):
            @contextlib.asynccontextmanager
            async def resource():
                try:
                    yield
                finally:
                    closed.set()

            await ctx.run.resources.enter_async_context(resource())
            started.set()
            await asyncio.sleep(60)

    seen = []

    async def consume():
        async for event in run_steps([Slow()], run):
            seen.append(event)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()
    assert run.state.step_status("slow") == "cancelled"


async def test_emit_from_worker_thread(run):
    class Threaded:
        name, title = "threads", "Threads"

        async def run(self, ctx):
            def work():
                assert threading.current_thread() is not threading.main_thread()
                for i in range(50):
                    ctx.log(f"line {i}")
                return 7

            return Done(summary=str(await ctx.blocking(work)))

    events = await collect([Threaded()], run)
    logs = [e.line for e in events if isinstance(e, LogLine)]
    assert logs == [f"line {i}" for i in range(50)]
    assert isinstance(events[0], StepStarted) and events[-1].summary == "7"


def test_event_to_dict_is_json_ready(tmp_path):
    import json

    event = StepFinished(step="x", summary="s", result={"path": tmp_path})
    data = json.loads(json.dumps(event.to_dict()))
    assert data["kind"] == "finished" and data["step"] == "x" and data["result"]["path"] == str(tmp_path)
