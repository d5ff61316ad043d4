"""Cancelling the test step stops its requests: the worker thread (which asyncio cannot cancel) must not
keep sending to the server — to a remote endpoint that costs money, and quitting waits for the thread."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from cvtriton_core.events import Progress, StepFailed
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.settings import Settings
from cvtriton_core.steps import local_target   # (TestModel imported by name would be collected by pytest)
from cvtriton_triton.local_server import LocalTritonServer
from cvtriton_triton.sample_models import build_sample_export, sample_images


def served_requests(url: str, model: str) -> int:
    with urllib.request.urlopen(f"http://{url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


async def test_cancelled_test_step_stops_sending(tmp_path: Path) -> None:
    export = build_sample_export(tmp_path / "sample")
    image = sample_images(tmp_path / "sample")[0]
    settings = Settings({"MODEL_NAME": "colours"})
    run = RunContext.create(settings, tmp_path / "work")
    events = [e async for e in run_steps([local_target.ImportModel(export), local_target.WriteRepository()], run)]
    assert not [e for e in events if isinstance(e, StepFailed)], events

    async with LocalTritonServer(tmp_path / "work" / "model_repository", log=lambda line: None,
                                 workdir=tmp_path / "triton") as server:
        await server.wait_ready("colours")
        run = RunContext.create(settings, tmp_path / "work")
        run.shared["triton_url"] = server.url      # what the serve-local step leaves for the test step
        busy = asyncio.Event()

        async def consume() -> None:
            async for event in run_steps([local_target.TestModel(image, requests=5000)], run):
                if isinstance(event, Progress) and (event.done or 0) >= 20:
                    busy.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(busy.wait(), 60)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert run.state.step_status("test") == "cancelled"
        await asyncio.sleep(0.3)                      # at most the request in flight finishes
        before = await asyncio.to_thread(served_requests, server.url, "colours")
        await asyncio.sleep(1.0)
        after = await asyncio.to_thread(served_requests, server.url, "colours")
        assert after == before, f"{after - before} requests sent after the step was cancelled"
        assert before < 5000
