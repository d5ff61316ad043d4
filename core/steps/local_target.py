"""The local target: import a Custom Vision export, write the Triton repository, serve it in the real Triton
server on this machine, send a test image through tritonclient. No Azure needed."""

from __future__ import annotations

import asyncio
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.image_ensemble import PathAnswer, prediction_json
from cvtriton_triton.model_info import ModelInfo, Prediction

if TYPE_CHECKING:
    from cvtriton_triton.load_test import LoadReport


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
    ensemble: str | None = None             # the image ensemble written beside the model, if any


@dataclass(frozen=True)
class ServeResult:
    summary: str
    url: str


@dataclass(frozen=True)
class TestResult:
    """``smoke``: no test image was given, so one generated picture of the model's input size was sent to show
    that the model loads and answers; ``predictions`` is then empty (they would mean nothing)."""

    summary: str
    model: str
    task: str
    image: Path | None
    predictions: tuple[Prediction, ...]
    latency_ms: float                       # median over the timed requests (the one request when smoke)
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)
    answers: tuple[PathAnswer, ...] = ()    # side by side: tensors to the model, bytes to the image ensemble,
                                            # bytes through the Custom Vision route (a container that serves it)
    disagreements: tuple[str, ...] = ()     # where the two answers differ (empty: they agree)
    load: tuple[LoadReport, ...] = field(default=(), repr=False)   # one load test per answer, same order
    smoke: bool = False                     # one request with a generated picture (no test image given)

    def to_json(self) -> dict:
        data = {"model": self.model, "task": self.task, "predictions": [prediction_json(p) for p in self.predictions],
                "latency_ms": self.latency_ms, "answers": [a.to_json() for a in self.answers],
                "agree": not self.disagreements, "disagreements": list(self.disagreements),
                "load_test": [r.to_json() for r in self.load]}
        return {**data, "smoke": True} if self.smoke else data


class ImportModel:
    name = "import"
    title = "Import model"

    def __init__(self, source: Path | None) -> None:
        self.source = source

    def check(self, settings: Settings) -> None:
        """The model's kind, zip and graph (legacy, broken, empty, not an image model), before the run starts."""
        if self.source is not None:
            from cvtriton_triton.model_import import check_source

            check_source(Path(self.source))

    async def run(self, ctx: StepContext) -> ImportResult:
        from cvtriton_triton.model_import import import_model

        source = self.source or self._export_dir(ctx)
        ctx.progress(f"Reading {source}")
        imported = await ctx.blocking(import_model, Path(source), ctx.workdir)
        for warning in imported.warnings:
            ctx.log(warning, level="warning")
        for change in imported.changes:
            ctx.log(f"graph rewritten for Triton: {change}")
        ctx.run.shared["imported"] = imported
        ctx.state.set(onnx_path=imported.onnx_path, model_source=Path(imported.source).resolve())
        info = imported.info
        return ImportResult(
            summary=f"{info.contract.value.replace('_', ' ')} model, input {info.input.name} "
                    f"{info.height}x{info.width} {info.input.dtype}, {len(imported.labels)} labels",
            onnx_path=imported.onnx_path, info=info, labels=imported.labels, warnings=imported.warnings,
        )

    @staticmethod
    def _export_dir(ctx: StepContext) -> Path:
        """This run's export; ``<workdir>/export`` only when no export step ever ran here (a folder put there by
        hand) — after a failed or interrupted export it may hold an older model."""
        recorded = ctx.state.get("export_dir")
        if recorded:
            return Path(recorded)
        if ctx.state.step_status("export") is None:
            return ctx.workdir / "export"
        raise UserError("no exported model in this run (the export step did not finish)",
                        "run the export step again, or pass --model PATH")


class WriteRepository:
    name = "repository"
    title = "Write Triton model repository"

    def __init__(self, ensemble: bool | None = None) -> None:
        self.ensemble = ensemble            # None: the TRITON_ENSEMBLE setting decides

    def check(self, settings: Settings) -> None:
        settings.require_valid("MODEL_NAME", "MODEL_VERSION", "TRITON_ENSEMBLE")

    async def run(self, ctx: StepContext) -> RepositoryResult:
        from cvtriton_core.steps.image_ensemble import apply_ensemble
        from cvtriton_triton.model_import import import_model
        from cvtriton_triton.model_repository import write_repository

        ctx.settings.require_valid("MODEL_NAME", "MODEL_VERSION", "TRITON_ENSEMBLE")
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
        ensemble = await apply_ensemble(ctx, repo, name, self.ensemble)
        ctx.state.set(repository=repo, model_name=name, model_version=version)
        for line in text.splitlines():
            ctx.log(line, source="config.pbtxt")
        return RepositoryResult(summary=f"{model_dir}/{version}/model.onnx + config.pbtxt"
                                        + (f" + image ensemble {ensemble}" if ensemble else ""),
                                repository=repo, model_name=name, model_version=version, config_text=text,
                                ensemble=ensemble)


class ServeLocal:
    name = "serve-local"
    title = "Start local Triton"

    async def run(self, ctx: StepContext) -> ServeResult:
        from cvtriton_triton.local_server import LocalTritonServer

        repo, model = ctx.state.get("repository"), ctx.state.get("model_name")
        if not repo or not model:
            raise UserError("no model repository — run Package first",
                            "run the import and repository steps (Package in the wizard), then start Triton")
        repo = Path(repo)
        if not (repo / model).is_dir():
            raise UserError(f"the model repository {repo} has no model {model!r} any more",
                            "run Package (the import and repository steps) again")
        triton_dir = ctx.workdir / "triton"
        await ctx.blocking(remove_stale_server_folders, triton_dir)
        server = LocalTritonServer(repo, log=ctx.logger("triton"), workdir=triton_dir)
        ctx.progress("Starting tritonserver")
        await ctx.run.resources.enter_async_context(server)
        ctx.progress(f"Waiting for model {model} to load")
        await server.wait_ready(model)
        from cvtriton_triton.ensemble import find_ensemble
        ensemble = await ctx.blocking(find_ensemble, repo, model)
        if ensemble is not None:
            await server.wait_ready(ensemble.names.ensemble)
        ctx.run.shared["triton_url"] = server.url
        return ServeResult(summary=f"Triton serving {model} at http://{server.url}", url=server.url)


def remove_stale_server_folders(triton_dir: Path) -> None:
    """Each server gets a fresh ``cvtriton-triton-*`` folder, removed when it stops; one left by a killed run
    (SIGKILL, power loss) is removed here. Safe: the work folder's run lock keeps other runs out."""
    import shutil

    if triton_dir.is_dir():
        for folder in triton_dir.glob("cvtriton-triton-*"):
            shutil.rmtree(folder, ignore_errors=True)


def _serves(url: str, model: str) -> bool:
    """Whether the Triton server at ``url`` has ``model`` loaded and ready (blocking)."""
    from cvtriton_triton.infer_client import TritonHttpClient

    with TritonHttpClient(url) as client:
        return client.is_model_ready(model)


class TestModel:
    """Send the test image both ways — tensors to the plain model (client-side pre/post-processing) and raw
    bytes through the image ensemble when the repository has one — then load-test each path with
    ``requests`` requests at ``concurrency`` (bounded by ``time_limit_s``). Without an image: one smoke request
    with a generated picture of the model's input size."""

    name = "test"
    title = "Test with an image"

    def __init__(self, image: Path | None, *, requests: int = 5, concurrency: int = 1,
                 ensemble: bool | None = None, time_limit_s: float | None = None) -> None:
        from cvtriton_triton.load_test import DEFAULT_TIME_LIMIT_S, LoadSpec

        self.image = Path(image) if image is not None else None
        self.requests = max(1, requests)
        self.ensemble = ensemble            # None: use it when the repository has one; False: tensors only
        self.spec = LoadSpec(requests=self.requests, concurrency=concurrency,
                             time_limit_s=time_limit_s or DEFAULT_TIME_LIMIT_S)   # bad values: UserError now
        if self.image is None:
            self.title = "Smoke test (generated image)"

    def check(self, settings: Settings) -> None:
        """A missing file, a folder or a file that is not a picture is refused before Triton starts."""
        if self.image is not None:
            from cvtriton_triton.preprocess import check_image

            check_image(self.image)

    async def run(self, ctx: StepContext) -> TestResult:
        from cvtriton_triton.model_repository import read_model_info

        url = ctx.run.shared.get("triton_url")
        if not url:
            raise UserError("no Triton server to test", "start the local target (the serve-local step) first")
        repo = ctx.state.get("repository")
        model = ctx.state.get("model_name")
        if not repo or not model:
            raise UserError("no model repository — run Package first", "run the import and repository steps")
        info = await ctx.blocking(read_model_info, Path(repo) / model)
        if self.image is None:
            return await self._smoke(ctx, url, model, info)
        return await self._timed(ctx, url, Path(repo), model, info)

    async def _smoke(self, ctx: StepContext, url: str, model: str, info: ModelInfo) -> TestResult:
        from cvtriton_triton.infer_client import TritonHttpClient
        from cvtriton_triton.preprocess import smoke_tensor

        tensor = smoke_tensor(info)
        outputs_wanted = [o.name for o in info.outputs]

        def send_one() -> float:
            with TritonHttpClient(url) as client:
                outputs, ms = client.timed_infer(model, info.input.name, tensor, outputs_wanted)
            missing = [name for name in outputs_wanted if name not in outputs]
            if missing:
                raise UserError(f"the model answered without the output {missing[0]!r}",
                                "package the model again", exit_code=1)
            return ms

        ctx.progress(f"one request with a generated {info.width}x{info.height} image")
        ms = await ctx.blocking(send_one)
        return TestResult(summary=f"{model} loads in Triton and answers (one request with a generated {info.width}x"
                                  f"{info.height} image: {ms:.1f} ms)", model=model, task=info.task, image=None,
                          predictions=(), latency_ms=ms, latencies_ms=(ms,), smoke=True)

    async def _timed(self, ctx: StepContext, url: str, repo: Path, model: str, info: ModelInfo) -> TestResult:
        from cvtriton_core.steps.image_ensemble import (answer_paths, compare_answers, load_targets,
                                                        run_load_tests, test_summary)
        from cvtriton_triton.ensemble import find_ensemble
        from cvtriton_triton.infer_client import TritonHttpClient
        from cvtriton_triton.preprocess import prepare

        tensor = await ctx.blocking(prepare, self.image, info)
        ensemble = await ctx.blocking(find_ensemble, repo, model) if self.ensemble is not False else None
        if self.ensemble and ensemble is None:
            raise UserError(f"the model repository {repo} has no image ensemble for '{model}'",
                            "write the repository again with the ensemble on (TRITON_ENSEMBLE=true)")
        not_served = ""
        if ensemble is not None and not await ctx.blocking(_serves, url, ensemble.names.ensemble):
            # e.g. run-local's image, which carries only the model: test what the server serves, and say so
            if self.ensemble:
                raise UserError(f"the Triton server at {url} does not serve the image ensemble "
                                f"'{ensemble.names.ensemble}'", "serve a repository or image that has it, or pass "
                                "--no-ensemble", exit_code=1)
            not_served = f"the server does not serve the image ensemble {ensemble.names.ensemble}"
            ctx.log(f"{not_served} (the repository has it): testing the tensor path only", level="warning")
            ensemble = None
        image_bytes = await ctx.blocking(self.image.read_bytes)
        route_url = ctx.run.shared.get("customvision_url") if ensemble is not None else None
        stop = threading.Event()   # a thread cannot be cancelled: it checks this between requests

        def send_requests() -> tuple:
            # tritonclient.http (geventhttpclient) binds its connections to one thread: create, use and
            # close the client inside this single worker thread.
            client = TritonHttpClient(url)
            try:
                answers = answer_paths(client, model, info, tensor, image_bytes, ensemble, route_url, ssl=False,
                                       headers=None, log=lambda line: ctx.log(line, source="test"))
            finally:
                client.close()
            targets = load_targets(url, model, info, tensor, image_bytes, ensemble, route_url)
            return answers, run_load_tests(ctx, targets, self.spec, ssl=False, headers=None, stop=stop)

        try:
            answers, reports = await ctx.blocking(send_requests)
        except asyncio.CancelledError:
            stop.set()   # else it keeps sending to the endpoint, and quitting waits for the thread
            raise
        preds = answers[0].predictions
        differ = compare_answers(ctx, answers)
        latencies = reports[0].latencies_ms
        median = statistics.median(latencies) if latencies else answers[0].latency_ms
        summary = test_summary(preds, median, answers, differ, reports) + (f"; {not_served}" if not_served else "")
        return TestResult(summary=summary, model=model,
                          task=info.task, image=self.image, predictions=preds, latency_ms=median,
                          latencies_ms=latencies, answers=answers, disagreements=differ, load=reports)
