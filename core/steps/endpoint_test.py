"""The ``endpoint-test`` step: the same image, preprocessing and Triton client as the local ``test`` step, sent
over HTTPS to the Azure ML endpoint with ``Authorization: Bearer <key or token>`` and, to reach a deployment that
has no traffic yet, ``azureml-model-deployment: <name>``. The image goes every way the deployment serves it, as
the local test sends it: tensors to the model, the raw bytes to the image ensemble through ``/v2``, and the raw
bytes through the Custom Vision route on the endpoint's own host (when this run's image carries it), which is
the URL an app that called Custom Vision uses (``customvision_url``). The first request of each path gives its
answer (compared with the tensor path's); then the load generator of the local test
(``cvtriton_triton.load_test``: N requests per path at a chosen concurrency, bounded in time, trust from
``REQUESTS_CA_BUNDLE`` when set) gives p50/p95/p99 and throughput. Refusals are explained: 401 (key or token),
404 (no route), 408 (timeout), 424 (the container answered non-200: its status from
``ms-azureml-model-error-statuscode``), 429 (over the endpoint's concurrency limit), 5xx."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_common import (
    STATE_DEPLOYMENT, azureml, check_deployment_name, check_given_endpoint, check_workspace_settings, endpoint_name,
)
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_triton.customvision_client import RouteRefused
from cvtriton_triton.customvision_front import BAD_IMAGE, UNKNOWN_ITERATION, UNKNOWN_PROJECT

if TYPE_CHECKING:
    from cvtriton_core.steps.image_ensemble import PathAnswer
    from cvtriton_triton.load_test import LoadReport

#: Requests in flight at once against an Azure ML endpoint: more only meets its 429 limit
#: (2 x max_concurrent_requests_per_instance x instances) sooner.
MAX_ENDPOINT_CONCURRENCY = 64


@dataclass(frozen=True)
class EndpointTestResult:
    """p50/p95/p99, throughput and ``latencies_ms`` are the tensor path's (``load[0]``); ``failed`` and
    ``errors`` (by status) count every path's load test; ``load`` has one report per path, in the order of
    ``answers``."""

    summary: str
    model: str
    task: str
    image: Path
    endpoint: str
    deployment: str | None          # None: routed by the endpoint's traffic split
    predictions: tuple[dict, ...]   # the shape ``local --json`` prints (the tensor path's)
    latency_ms: float               # p50
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rps: float
    requests: int
    concurrency: int
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    customvision: tuple[dict, ...] | None = None     # the published iteration's answer, same shape; None: not asked
    customvision_latency_ms: float | None = None
    answers: tuple[PathAnswer, ...] = ()             # side by side: tensor, image (ensemble), customvision (route)
    disagreements: tuple[str, ...] = ()              # where the ensemble's or the route's answer differs
    customvision_url: str | None = None              # the Custom Vision prediction URL an app uses on this endpoint
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)
    load: tuple[LoadReport, ...] = field(default=(), repr=False)

    def to_json(self) -> dict:
        return {"model": self.model, "task": self.task, "predictions": list(self.predictions),
                "latency_ms": self.latency_ms, "endpoint": self.endpoint, "deployment": self.deployment,
                "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
                "throughput_rps": self.throughput_rps, "requests": self.requests, "concurrency": self.concurrency,
                "failed": self.failed, "errors": dict(self.errors),
                "customvision": None if self.customvision is None else list(self.customvision),
                "answers": [a.to_json() for a in self.answers], "agree": not self.disagreements,
                "disagreements": list(self.disagreements), "customvision_url": self.customvision_url,
                "load_test": [r.to_json() for r in self.load]}


def explain_status(status: int | None, message: str, *, model: str, deployment: str | None,
                   limit_hint: str, container_status: str | None = None) -> tuple[str, str]:
    """(cause, fix) for a refused request."""
    target = f"deployment {deployment}" if deployment else "the endpoint"
    if status == 401:
        return (f"the endpoint refused the key or token (HTTP 401): {message}",
                "run endpoint-test again (it reads the current key or a fresh token); check the auth mode")
    if status == 403:
        return f"the endpoint refused access (HTTP 403): {message}", "check the endpoint's network access settings"
    if status == 404:
        return (f"the endpoint has nowhere to send the request (HTTP 404): {message}",
                "give traffic to a deployment (traffic step) or name one with --deployment")
    if status == 408:
        return (f"{target} did not answer within its request timeout (HTTP 408)",
                "choose a bigger instance type, or check the container log for a slow model")
    if status == 424:
        inner = f"HTTP {container_status}" if container_status else "a non-200 status"
        fix = {"400": "check the model's input name, shape and data type against the image's config.pbtxt",
               "404": f"the image's model repository has no model {model}: rebuild the image from this run's "
                      "repository (MODEL_NAME must match)"}.get(container_status or "",
                                                                  "read the deployment's container log")
        return f"the Triton container of {target} answered {inner}: {message}", fix
    if status == 429:
        return (f"{target} throttled the request (HTTP 429): more requests in flight than {limit_hint}",
                "lower --concurrency, or deploy more instances")
    if status in (502, 503):
        return (f"{target} is not ready to serve (HTTP {status}): {message}",
                "wait for the deploy step to finish, then read the deployment's container log")
    if status and status >= 500:
        return f"the endpoint failed (HTTP {status}): {message}", "run endpoint-test again later"
    return message, "check the endpoint and the deployment in the Azure ML studio"


@dataclass
class _Target:
    """Where the test requests go and what they carry (the headers hold the secret: never shown)."""

    endpoint: str
    deployment: str | None
    host: str
    model: str
    info: Any
    tensor: Any
    headers: dict[str, str]
    limit_hint: str
    image_bytes: bytes = b""
    ensemble: Any = None            # ``ensemble.EnsembleInfo`` when the deployment serves the image ensemble
    route: bool = False             # whether it serves the Custom Vision route too (this run's image does)

    @property
    def customvision_url(self) -> str | None:
        """The Custom Vision prediction URL an app posts the image to on this endpoint."""
        from cvtriton_triton.customvision_client import route_for

        return f"https://{self.host}{route_for(self.ensemble)}" if self.route and self.ensemble else None

    def client(self) -> Any:
        from cvtriton_triton.infer_client import TritonHttpClient

        return TritonHttpClient(self.host, ssl=True, headers=self.headers,
                                ca_certs=os.environ.get("REQUESTS_CA_BUNDLE") or None, timeout=180.0)

    def answers(self, client: Any, log: Any) -> tuple[PathAnswer, ...]:
        """The first request of each path (blocking, in the thread that made ``client``)."""
        from cvtriton_core.steps.image_ensemble import answer_paths

        return answer_paths(client, self.model, self.info, self.tensor, self.image_bytes, self.ensemble,
                            self.host if self.route else None, ssl=True, headers=self.headers, log=log)

    def load_targets(self) -> list:
        """Every path's request, serialized once for the load generator, in the order of ``answers``."""
        from cvtriton_core.steps.image_ensemble import load_targets

        return load_targets(self.host, self.model, self.info, self.tensor, self.image_bytes, self.ensemble,
                            self.host if self.route else None)

    def explain(self, status: int | None, message: str, container_status: str | None = None) -> tuple[str, str]:
        return explain_status(status, message, model=self.model, deployment=self.deployment,
                              limit_hint=self.limit_hint, container_status=container_status)


class EndpointTest:
    name = "endpoint-test"
    title = "Test the Azure ML endpoint"

    def __init__(self, image: Path | None, *, requests: int = 5, concurrency: int = 1,
                 time_limit_s: float | None = None, options: AzureOptions | None = None,
                 ensemble: bool | None = None) -> None:
        from cvtriton_triton.load_test import DEFAULT_TIME_LIMIT_S, LoadSpec

        self.image = Path(image) if image is not None else None
        self.ensemble = ensemble            # None: every path the deployment serves; False: tensors only
        self.o = options or AzureOptions()
        self.spec = LoadSpec(requests=max(1, requests), concurrency=concurrency,
                             time_limit_s=time_limit_s or DEFAULT_TIME_LIMIT_S)   # bad values: UserError now
        self.requests = self.spec.requests

    def check(self, settings: Settings) -> None:
        """The image, the concurrency, the names and the workspace settings, before anything is sent."""
        from cvtriton_triton.preprocess import check_image

        if self.image is None:
            raise UserError("the endpoint-test step needs a test image", "pass --image PATH (a JPEG or PNG)")
        check_image(self.image)
        if self.spec.concurrency > MAX_ENDPOINT_CONCURRENCY:
            raise UserError(f"concurrency {self.spec.concurrency} is too high for an endpoint test",
                            f"choose 1 to {MAX_ENDPOINT_CONCURRENCY} (--concurrency)")
        check_workspace_settings(settings)
        check_given_endpoint(settings, self.o.endpoint)
        if self.o.deployment and not self.o.by_traffic:
            check_deployment_name(self.o.deployment)

    async def run(self, ctx: StepContext) -> EndpointTestResult:
        from cvtriton_core.steps.image_ensemble import compare_answers, prediction_json, run_load_tests

        self.check(ctx.settings)
        az = azureml(ctx)
        target, secret = await self._target(ctx, az)
        stop = threading.Event()
        try:
            answers = await self._warm_up(ctx, az, target, secret)
            targets = await ctx.blocking(target.load_targets)
            reports = await ctx.blocking(run_load_tests, ctx, targets, self.spec, ssl=True, headers=target.headers,
                                         stop=stop)
        except asyncio.CancelledError:
            stop.set()      # else the threads keep sending to the endpoint, and quitting waits for them
            raise
        for load in reports:
            self._check_load(ctx, target, load)
        load = reports[0]
        p50, p95, p99 = load.p50_ms, load.p95_ms, load.p99_ms
        preds = answers[0].predictions
        differ = compare_answers(ctx, answers)
        ours = [prediction_json(p) for p in preds]
        cloud = await self._compare(ctx, ours, target.info.task == "detection")
        failed = sum(r.error_count for r in reports)
        errors: dict[str, int] = {}
        for report in reports:
            for status, count in report.errors.items():
                key = f"HTTP {status}" if status.isdigit() else status
                errors[key] = errors.get(key, 0) + count
        url = target.customvision_url
        if url:
            ctx.log(f"an app that called Custom Vision posts the image to {url} with the header "
                    f"'Authorization: Bearer <endpoint key or token>' instead of 'Prediction-Key'",
                    source="endpoint-test")
        return EndpointTestResult(
            summary=self._summary(target, answers, differ, reports), model=target.model, task=target.info.task,
            image=self.image, endpoint=target.endpoint, deployment=target.deployment, predictions=tuple(ours),
            latency_ms=p50, p50_ms=p50, p95_ms=p95, p99_ms=p99, throughput_rps=load.throughput_rps,
            requests=self.requests, concurrency=self.spec.concurrency, failed=failed, errors=errors,
            customvision=cloud.predictions if cloud else None,
            customvision_latency_ms=cloud.latency_ms if cloud else None, answers=answers, disagreements=differ,
            customvision_url=url, latencies_ms=load.latencies_ms, load=reports)

    def _summary(self, target: _Target, answers: tuple, differ: tuple[str, ...], reports: tuple) -> str:
        from cvtriton_core.steps.image_ensemble import agreement

        preds, load = answers[0].predictions, reports[0]
        best = f"{preds[0].label} {preds[0].probability:.2f}" if preds else "no prediction above threshold"
        failed = sum(r.error_count for r in reports)
        agreed = agreement(answers, differ)
        early = [r for r in reports if r.stopped != "completed"]
        return (f"{best} from {target.endpoint}/{target.deployment or 'traffic split'}: p50 {load.p50_ms:.1f} ms, "
                f"p95 {load.p95_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, {load.throughput_rps:.1f} req/s at "
                f"concurrency {self.spec.concurrency}" + (f"; {agreed}" if agreed else "")
                + (f", {failed} failed" if failed else "")
                + "".join(f", {r.target} stopped early ({r.stopped}) after {r.sent} of {self.requests}"
                          for r in early))

    def _check_load(self, ctx: StepContext, target: _Target, load: LoadReport) -> None:
        """Log each kind of failure of one path's load test, explained; a path with no timed answer fails the
        step."""
        for status, count in sorted(load.errors.items()):
            cause, fix = self._explain_load(target, status, load)
            ctx.log(f"{count} of {self.requests} requests to {load.target} failed: {cause} — {fix}",
                    level="warning")
        if load.warmup_errors:
            counts = ", ".join(f"{n} x {status}" for status, n in sorted(load.warmup_errors.items()))
            ctx.log(f"uncounted first requests of the load test's connections to {load.target} failed ({counts})",
                    level="warning")
        if not load.ok:
            table = load.errors or load.warmup_errors
            if not table:
                raise UserError(f"no timed request to {load.target} finished (load test {load.stopped})",
                                "run endpoint-test again with fewer --requests", exit_code=1)
            raise UserError(*self._explain_load(target, max(table, key=table.get), load, every=True), exit_code=1)

    def _explain_load(self, target: "_Target", status: str, load: LoadReport, *, every: bool = False,
                      ) -> tuple[str, str]:
        """(cause, fix) for the load test's failures keyed ``status`` ("401", "timeout", "connection")."""
        if status == "timeout":
            return (f"{'every timed request' if every else 'requests'} got no answer within "
                    f"{self.spec.timeout_s:g} s", "choose a bigger instance type or fewer requests in flight "
                    "(--concurrency), or check the container log for a slow model")
        if status == "connection":
            return (f"{'every timed request' if every else 'requests'} lost the connection to the endpoint "
                    f"({load.first_error or 'no answer'})", "check the network and the endpoint's state")
        same = load.first_error.startswith(f"HTTP {status}:")     # the first error's text, if it is this kind
        message = _service_text(load.first_error) if same else ("every timed request failed" if every else "")
        return target.explain(int(status) if status.isdigit() else None, message)

    async def _target(self, ctx: StepContext, az: Any) -> tuple[_Target, Any]:
        from cvtriton_core.adapters.azureml import MAX_CONCURRENT_PER_INSTANCE, MODEL_DEPLOYMENT_HEADER
        from cvtriton_triton.model_repository import read_model_info
        from cvtriton_triton.preprocess import prepare

        repo, model = ctx.state.get("repository"), ctx.state.get("model_name")
        if not repo or not model:
            raise UserError("no model repository in this run (the test needs the model's inputs and outputs)",
                            "run the repository step in this work folder first")
        endpoint = endpoint_name(ctx, self.o.endpoint)
        deployment = None if self.o.by_traffic else (self.o.deployment or ctx.state.get(STATE_DEPLOYMENT))
        if deployment is None and not self.o.by_traffic:
            ctx.log(f"no --deployment given and no deployment recorded by a deploy step in this work folder: "
                    f"testing {endpoint} through its traffic split", level="warning")
        info_ep = await ctx.blocking(az.endpoint, endpoint)
        if info_ep is None:
            raise UserError(f"endpoint {endpoint} does not exist", "run the deploy step first")
        instances = 1
        if deployment:
            dep = await ctx.blocking(az.deployment, endpoint, deployment)
            if dep is None:
                raise UserError(f"endpoint {endpoint} has no deployment {deployment}", "deploy it, or name another "
                                "with --deployment")
            if dep.state != "Succeeded":
                raise UserError(f"deployment {deployment} is {dep.state}", "run the deploy step until it succeeds")
            instances = dep.instance_count
        host = urlsplit(info_ep.scoring_uri).netloc
        if not host:
            raise UserError(f"endpoint {endpoint} has no scoring URI yet", "wait for the deploy step to finish")
        secret = await ctx.blocking(az.secret, endpoint)
        info = await ctx.blocking(read_model_info, Path(repo) / model)
        tensor = await ctx.blocking(prepare, self.image, info)
        headers = {"Authorization": f"Bearer {secret.value}"}
        if deployment:
            headers[MODEL_DEPLOYMENT_HEADER] = deployment
        limit = 2 * MAX_CONCURRENT_PER_INSTANCE * instances
        hint = f"2 x {MAX_CONCURRENT_PER_INSTANCE} (max_concurrent_requests_per_instance) x {instances} " \
               f"instance(s) = {limit}"
        image_bytes = await ctx.blocking(self.image.read_bytes)
        target = _Target(endpoint, deployment, host, model, info, tensor, headers, hint, image_bytes)
        await self._paths(ctx, target, Path(repo))
        return target, secret

    async def _paths(self, ctx: StepContext, target: _Target, repo: Path) -> None:
        """Which ways the deployment serves the image besides tensors: the image ensemble of this run's
        repository when the deployment has it loaded (asked over ``/v2``; an expired token or another refusal
        is left to the first request to explain), and the Custom Vision route when this run's image carries
        it (the package step recorded the route)."""
        from cvtriton_triton.ensemble import find_ensemble

        if self.ensemble is False:
            return
        ensemble = await ctx.blocking(find_ensemble, repo, target.model)
        if ensemble is None:
            if self.ensemble:
                raise UserError(f"the model repository {repo} has no image ensemble for '{target.model}'",
                                "write the repository again with the ensemble on (TRITON_ENSEMBLE=true), then "
                                "package, build, push and deploy")
            return

        def ready() -> bool | None:
            client = target.client()
            try:
                return client.is_model_ready(ensemble.names.ensemble)
            except UserError:
                return None
            finally:
                client.close()

        served = await ctx.blocking(ready)
        if served is False:
            where = f"deployment {target.deployment}" if target.deployment else f"endpoint {target.endpoint}"
            if self.ensemble:
                raise UserError(f"{where} does not serve the image ensemble '{ensemble.names.ensemble}'",
                                "deploy an image built from this run's repository, or pass --no-ensemble",
                                exit_code=1)
            ctx.log(f"{where} does not serve the image ensemble {ensemble.names.ensemble} (this run's repository "
                    "has it): testing the tensor path only", level="warning")
            return
        target.ensemble = ensemble
        target.route = bool(ctx.state.get("image_customvision_route"))

    async def _warm_up(self, ctx: StepContext, az: Any, target: _Target, secret: Any) -> tuple:
        """The first request of each path (not timed): the answers; an expired aml_token is replaced once."""

        def once() -> tuple:
            client = target.client()
            try:
                return target.answers(client, lambda line: ctx.log(f"{line} (warm-up, not counted)",
                                                                   source="endpoint-test"))
            finally:
                client.close()

        try:
            try:
                return await ctx.blocking(once)
            except UserError as exc:
                if getattr(exc, "http_status", None) != 401 or secret.kind != "aml_token":
                    raise
                ctx.log("the endpoint refused the token (expired?): fetching a fresh one", source="endpoint-test")
                secret = await ctx.blocking(az.secret, target.endpoint)
                target.headers["Authorization"] = f"Bearer {secret.value}"
                return await ctx.blocking(once)
        except RouteRefused as exc:
            if _no_route(exc):       # the deployment's scoring port is Triton's own (an image given by hand)
                ctx.log(f"the deployment answers no Custom Vision route ({exc.message or exc.http_status}): its "
                        "scoring port is not this run's image's front; testing /v2 only", level="warning")
                target.route = False
                return await ctx.blocking(once)
            raise UserError(*self._route_refused(target, exc), exit_code=1) from None
        except UserError as exc:
            raise await self._refused(ctx, exc, target) from None

    def _route_refused(self, target: _Target, exc: Any) -> tuple[str, str]:
        """(cause, fix) for the Custom Vision route's refusal: the endpoint's own (401, 404, 429, ...) as for
        the other paths; what the container's route answered (behind a 424) in the route's own words."""
        from cvtriton_core.adapters.azureml import MODEL_ERROR_STATUS_HEADER

        status = exc.http_status
        if status != 424:
            return target.explain(status, exc.message)
        inner = exc.headers.get(MODEL_ERROR_STATUS_HEADER.lower()) or "a non-200 status"
        where = f"deployment {target.deployment}" if target.deployment else "the endpoint"
        said = f"{exc.code}: {exc.message}" if exc.code else exc.message
        if exc.code in (UNKNOWN_PROJECT, UNKNOWN_ITERATION):
            fix = ("the image answers for other ids than this run's repository: package, build, push and deploy "
                   "the image again from this run's repository")
        elif exc.code == BAD_IMAGE:
            fix = "check the test image (a JPEG, PNG, BMP or GIF the ensemble can decode)"
        else:
            fix = "read the deployment's container log"
        return f"the Custom Vision route of {where} answered HTTP {inner}: {said}", fix

    async def _refused(self, ctx: StepContext, exc: UserError, target: _Target) -> UserError:
        status = getattr(exc, "http_status", None)
        if status is None:
            return UserError(exc.cause, exc.fix, exit_code=1)
        message, container_status = _service_text(exc.cause), None
        if status == 424:
            container_status, inner = await ctx.blocking(_diagnose_424, target)
            message = inner or message
        return UserError(*target.explain(status, message, container_status), exit_code=1)

    async def _compare(self, ctx: StepContext, ours: list[dict], detection: bool) -> Any:
        """The same image through Custom Vision's prediction API, when it is configured; a refusal is a
        warning (the comparison is extra), never the step's failure."""
        from cvtriton_core.adapters.customvision_prediction import predict

        s = ctx.settings
        wanted = {"VISION_PREDICTION_ENDPOINT": s.get("VISION_PREDICTION_ENDPOINT"),
                  "VISION_PREDICTION_KEY": s.get("VISION_PREDICTION_KEY"),
                  "VISION_PROJECT_ID": s.get("VISION_PROJECT_ID") or ctx.state.get("project_id"),
                  "VISION_PUBLISH_ITERATION_NAME": s.get("VISION_PUBLISH_ITERATION_NAME") or ctx.state.get("publish_name")}
        if not all(wanted.values()):
            if wanted["VISION_PREDICTION_KEY"]:
                missing = ", ".join(k for k, v in wanted.items() if not v)
                ctx.log(f"no Custom Vision comparison: {missing} not set", level="warning")
            return None
        published, exported = ctx.state.get("published_iteration"), ctx.state.get("export_iteration")
        if published and exported and published != exported:
            ctx.log(f"the published iteration {published} is not the exported one {exported}: the answers may "
                    "differ", level="warning")
        try:
            cloud = await ctx.blocking(predict, wanted["VISION_PREDICTION_ENDPOINT"], wanted["VISION_PREDICTION_KEY"],
                                       wanted["VISION_PROJECT_ID"], wanted["VISION_PUBLISH_ITERATION_NAME"],
                                       self.image.read_bytes(), detection=detection)
        except UserError as exc:
            ctx.log(f"no Custom Vision comparison: {exc.one_line()}", level="warning")
            return None
        theirs = {p["label"]: p["probability"] for p in cloud.predictions}
        ctx.log(f"side by side (Triton | Custom Vision {cloud.latency_ms:.0f} ms):", source="endpoint-test")
        for p in ours[:5]:
            other = theirs.get(p["label"])
            shown = f"{other:.4f}" if other is not None else "—"
            ctx.log(f"  {p['label']:<20} {p['probability']:.4f} | {shown}", source="endpoint-test")
        return cloud


def _no_route(exc: Any) -> bool:
    """Whether a route refusal says the container has no Custom Vision route at all: a 424 (the container
    answered non-200) whose body is no Custom Vision error — Triton's own 404 for a path it does not know."""
    from cvtriton_core.adapters.azureml import MODEL_ERROR_STATUS_HEADER

    return (exc.http_status == 424 and exc.code is None
            and exc.headers.get(MODEL_ERROR_STATUS_HEADER.lower()) in ("400", "404"))


def _service_text(cause: str) -> str:
    """The service's own words from the client's error line (``... failed: HTTP 404: {"message": "..."}``)."""
    match = re.search(r"HTTP \d{3}: (.*)$", cause)
    text = match.group(1) if match else cause
    try:
        body = json.loads(text)
    except ValueError:
        return text
    return str(body.get("message") or body.get("error") or text) if isinstance(body, dict) else text


def _diagnose_424(target: _Target) -> tuple[str | None, str]:
    """Send the same request once more without tritonclient to read Azure's model-error headers."""
    import requests
    import tritonclient.http as triton_http
    from tritonclient.utils import np_to_triton_dtype

    from cvtriton_core.adapters.azureml import MODEL_ERROR_STATUS_HEADER

    info, tensor = target.info, target.tensor
    request_input = triton_http.InferInput(info.input.name, list(tensor.shape), np_to_triton_dtype(tensor.dtype))
    request_input.set_data_from_numpy(tensor, binary_data=True)
    body, json_size = triton_http.InferenceServerClient.generate_request_body([request_input])
    sent = {**target.headers, "Content-Type": "application/octet-stream"}
    if json_size is not None:
        sent["Inference-Header-Content-Length"] = str(json_size)
    try:
        response = requests.post(f"https://{target.host}/v2/models/{target.model}/infer", data=body, headers=sent,
                                 timeout=180)
    except requests.RequestException:
        return None, ""
    status = response.headers.get(MODEL_ERROR_STATUS_HEADER)
    try:
        detail = str(response.json().get("error") or response.json().get("message") or "")
    except ValueError:
        detail = response.text[:200]
    return status, " ".join(detail.split())[:300]
