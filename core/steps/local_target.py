"""The local target: import a Custom Vision export, write the Triton repository, serve it in the real Triton
server on this machine, send a test image through tritonclient. No Azure needed."""

from __future__ import annotations

import asyncio
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_triton.model_info import ModelInfo, Prediction


@dataclass(frozen=True)
class ImportResult:
    summary: str
    onnx_path: Path
    info: ModelInfo
    labels: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepositoryResult:
    summary: str
    repository: Path
    model_name: str
    model_version: str
    config_text: str


@dataclass(frozen=True)
class ServeResult:
    summary: str
    url: str


@dataclass(frozen=True)
class TestResult:
    summary: str
    model: str
    task: str
    image: Path
    predictions: tuple[Prediction, ...]
    latency_ms: float                       # median over the timed requests
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_json(self) -> dict:
        return {"model": self.model, "task": self.task, "predictions": prediction_dicts(self.predictions),
                "latency_ms": self.latency_ms}


def prediction_dicts(predictions: tuple[Prediction, ...]) -> list[dict]:
    """Predictions as ``local --json`` prints them: ``label``, ``probability`` and, for detection, ``box``."""
    preds = []
    for p in predictions:
        item: dict = {"label": p.label, "probability": float(p.probability)}
        if p.box is not None:
            item["box"] = {"left": p.box.left, "top": p.box.top, "width": p.box.width, "height": p.box.height}
        preds.append(item)
    return preds


class ImportModel:
    name = "import"
    title = "Import model"

    def __init__(self, source: Path | None) -> None:
        self.source = source

    async def run(self, ctx: StepContext) -> ImportResult:
        from cvtriton_triton.model_import import import_model

        source = self.source or Path(ctx.state.get("export_dir") or ctx.workdir / "export")
        ctx.progress(f"Reading {source}")
        imported = await ctx.blocking(import_model, Path(source), ctx.workdir)
        for warning in imported.warnings:
            ctx.log(warning, level="warning")
        for change in imported.changes:
            ctx.log(f"graph rewritten for Triton: {change}")
        ctx.run.shared["imported"] = imported
        ctx.state.set(onnx_path=imported.onnx_path, import_source=Path(source).resolve())
        info = imported.info
        return ImportResult(
            summary=f"{info.contract.value.replace('_', ' ')} model, input {info.input.name} "
                    f"{info.height}x{info.width} {info.input.dtype}, {len(imported.labels)} labels",
            onnx_path=imported.onnx_path, info=info, labels=imported.labels, warnings=imported.warnings,
        )


class WriteRepository:
    name = "repository"
    title = "Write Triton model repository"

    async def run(self, ctx: StepContext) -> RepositoryResult:
        from cvtriton_triton.model_import import import_model
        from cvtriton_triton.model_repository import write_repository

        ctx.settings.require_valid("MODEL_NAME", "MODEL_VERSION")
        name = ctx.settings["MODEL_NAME"]
        version = ctx.settings["MODEL_VERSION"]
        imported = ctx.run.shared.get("imported")
        if imported is None:  # resumed run: the import step finished in an earlier process
            onnx_path = ctx.state.get("onnx_path")
            if not onnx_path or not Path(onnx_path).exists():
                raise UserError("no imported model in this run", "run the import step first")
            imported = await ctx.blocking(import_model, Path(onnx_path).parent, ctx.workdir / "reimport")
        repo = ctx.workdir / "model_repository"
        model_dir = await ctx.blocking(write_repository, imported, repo, name, version, replace=True)
        text = (model_dir / "config.pbtxt").read_text(encoding="utf-8")
        ctx.state.set(repository=repo, model_name=name, model_version=version)
        for line in text.splitlines():
            ctx.log(line, source="config.pbtxt")
        return RepositoryResult(summary=f"{model_dir}/{version}/model.onnx + config.pbtxt",
                                repository=repo, model_name=name, model_version=version, config_text=text)


class ServeLocal:
    name = "serve-local"
    title = "Start local Triton"

    async def run(self, ctx: StepContext) -> ServeResult:
        from cvtriton_triton.local_server import LocalTritonServer

        repo = Path(ctx.state.get("repository") or ctx.workdir / "model_repository")
        model = ctx.state.get("model_name") or ctx.settings.get("MODEL_NAME", "customvision")
        server = LocalTritonServer(repo, log=ctx.logger("triton"), workdir=ctx.workdir / "triton")
        ctx.progress("Starting tritonserver")
        await ctx.run.resources.enter_async_context(server)
        ctx.progress(f"Waiting for model {model} to load")
        await server.wait_ready(model)
        ctx.run.shared["triton_url"] = server.url
        return ServeResult(summary=f"Triton serving {model} at http://{server.url}", url=server.url)


class TestModel:
    """Send one image through tritonclient with binary tensors: one warm-up request, then N timed ones."""

    name = "test"
    title = "Test with an image"

    def __init__(self, image: Path, *, url: str | None = None, requests: int = 5,
                 ssl: bool = False, headers: dict[str, str] | None = None) -> None:
        self.image = Path(image)
        self.url = url
        self.requests = max(1, requests)
        self.ssl = ssl
        self.headers = headers

    async def run(self, ctx: StepContext) -> TestResult:
        from cvtriton_triton.infer_client import TritonHttpClient
        from cvtriton_triton.model_repository import read_model_info
        from cvtriton_triton.postprocess import predictions
        from cvtriton_triton.preprocess import prepare

        url = self.url or ctx.run.shared.get("triton_url")
        if not url:
            raise UserError("no Triton server to test", "start the local target or deploy first")
        repo = ctx.state.get("repository")
        model = ctx.state.get("model_name")
        if not repo or not model:
            raise UserError("no model repository in this run", "run the repository step first")
        info = await ctx.blocking(read_model_info, Path(repo) / model)
        tensor = await ctx.blocking(prepare, self.image, info)
        outputs_wanted = [o.name for o in info.outputs]
        stop = threading.Event()   # a thread cannot be cancelled: it checks this between requests

        def send_requests() -> tuple[dict, list[float]]:
            # tritonclient.http (geventhttpclient) binds its connections to one thread: create, use and
            # close the client inside this single worker thread.
            client = TritonHttpClient(url, ssl=self.ssl, headers=self.headers)
            try:
                outputs, first_ms = client.timed_infer(model, info.input.name, tensor, outputs_wanted)
                ctx.log(f"first request (warm-up, not counted): {first_ms:.1f} ms", source="test")
                timings: list[float] = []
                for i in range(self.requests):
                    if stop.is_set():
                        break
                    _, ms = client.timed_infer(model, info.input.name, tensor, outputs_wanted)
                    timings.append(ms)
                    ctx.progress(f"request {i + 1}/{self.requests}: {ms:.1f} ms", done=i + 1, total=self.requests)
                return outputs, timings
            finally:
                client.close()

        try:
            outputs, latencies = await ctx.blocking(send_requests)
        except asyncio.CancelledError:
            stop.set()   # else it keeps sending to the endpoint, and quitting waits for the thread
            raise
        preds = tuple(predictions(outputs, info))
        best = f"{preds[0].label} {preds[0].probability:.2f}" if preds else "no prediction above threshold"
        median = statistics.median(latencies)
        return TestResult(summary=f"{best} ({median:.1f} ms median)", model=model, task=info.task,
                          image=self.image, predictions=preds, latency_ms=median, latencies_ms=tuple(latencies))
