"""The local target: import a Custom Vision export, write the Triton repository, serve it in the real Triton
server on this machine, send a test image through tritonclient. No Azure needed."""

from __future__ import annotations

import statistics
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
        preds = []
        for p in self.predictions:
            item: dict = {"label": p.label, "probability": float(p.probability)}
            if p.box is not None:
                item["box"] = {"left": p.box.left, "top": p.box.top, "width": p.box.width, "height": p.box.height}
            preds.append(item)
        return {"model": self.model, "task": self.task, "predictions": preds, "latency_ms": self.latency_ms}


class ImportModel:
    name = "import"
    title = "Import model"

    def __init__(self, source: Path | None) -> None:
        self.source = source

    async def run(self, ctx: StepContext) -> ImportResult:
        from cvtriton_triton.model_import import import_model

        source = self.source
        if source is None:
            source = Path(ctx.state.get("export_dir") or ctx.workdir / "export")
        ctx.progress(f"Reading {source}")
        imported = await ctx.blocking(import_model, Path(source), ctx.workdir / "model")
        for warning in getattr(imported, "warnings", ()) or ():
            ctx.log(warning, level="warning")
        info = imported.info
        ctx.state.set(onnx_path=imported.onnx_path)
        return ImportResult(
            summary=f"{info.task} model ({info.contract.value}), input {info.input.name} "
                    f"{info.height}x{info.width} {info.input.dtype}, {len(imported.labels)} labels",
            onnx_path=imported.onnx_path, info=info, labels=tuple(imported.labels),
            warnings=tuple(getattr(imported, "warnings", ()) or ()),
        )


class WriteRepository:
    name = "repository"
    title = "Write Triton model repository"

    async def run(self, ctx: StepContext) -> RepositoryResult:
        from cvtriton_triton.model_import import import_model
        from cvtriton_triton.model_repository import write_repository

        name = ctx.settings.get("MODEL_NAME", "customvision")
        version = ctx.settings.get("MODEL_VERSION", "1")
        ctx.settings.require("MODEL_NAME", "MODEL_VERSION") if ctx.settings.get("MODEL_NAME") else None
        onnx_path = ctx.state.get("onnx_path")
        if not onnx_path:
            raise UserError("no imported model in this run", "run the import (or export) step first")
        imported = await ctx.blocking(import_model, Path(onnx_path).parent, ctx.workdir / "model")
        repo = ctx.workdir / "model_repository"
        config = await ctx.blocking(write_repository, imported, repo, name, version)
        text = Path(config).read_text(encoding="utf-8")
        ctx.state.set(repository=repo, model_name=name, model_version=version)
        for line in text.splitlines():
            ctx.log(line, source="config.pbtxt")
        return RepositoryResult(summary=f"{repo}/{name}/{version}/model.onnx + config.pbtxt",
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
        ctx.progress(f"Waiting for model {model}", fraction=0.5)
        await server.wait_ready(model)
        ctx.run.shared["triton_url"] = server.url
        return ServeResult(summary=f"Triton serving {model} at http://{server.url}", url=server.url)


class TestModel:
    """Send one image (then a few timed repeats) through tritonclient with binary tensors."""

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
        from cvtriton_triton.postprocess import predictions
        from cvtriton_triton.preprocess import load_image, to_tensor

        url = self.url or ctx.run.shared.get("triton_url")
        if not url:
            raise UserError("no Triton server to test", "start the local target or deploy first")
        onnx_path = ctx.state.get("onnx_path")
        model = ctx.state.get("model_name") or ctx.settings.get("MODEL_NAME", "customvision")
        info = await ctx.blocking(_model_info, Path(onnx_path)) if onnx_path else None
        if info is None:
            raise UserError("no imported model in this run", "run the import step first")
        image = await ctx.blocking(load_image, self.image)
        tensor = await ctx.blocking(to_tensor, image, info)
        client = TritonHttpClient(url, ssl=self.ssl, headers=self.headers)
        outputs_wanted = [o.name for o in info.outputs]
        latencies: list[float] = []
        outputs = None
        for i in range(self.requests):
            outputs, ms = await ctx.blocking(client.timed_infer, model, info.input.name, tensor, outputs_wanted)
            latencies.append(ms)
            ctx.progress(f"request {i + 1}/{self.requests}: {ms:.1f} ms", done=i + 1, total=self.requests)
        preds = tuple(predictions(outputs, info))
        best = f"{preds[0].label} {preds[0].probability:.2f}" if preds else "no prediction above threshold"
        median = statistics.median(latencies)
        return TestResult(summary=f"{best} ({median:.1f} ms median)", model=model, task=info.task,
                          image=self.image, predictions=preds, latency_ms=median, latencies_ms=tuple(latencies))


def _model_info(onnx_path: Path) -> ModelInfo:
    from cvtriton_triton.model_import import import_model

    return import_model(onnx_path.parent, onnx_path.parent.parent / "model").info
