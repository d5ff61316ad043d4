"""The image ensemble in the pipeline: whether to write it, which ids it answers with, and the test
steps' answers (tensors to the plain model, raw image bytes through the ensemble and through the Custom
Vision route) and load tests.

Used by ``WriteRepository`` and ``TestModel`` in ``local_target``; the Triton side lives in
``cvtriton_triton.ensemble`` (writer), ``ensemble_runtime`` (what the steps run) and ``load_test``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import BOOLEANS
from cvtriton_triton.model_info import Prediction

#: Probabilities and box coordinates of the two paths may differ by this much and still agree
#: (both run the same code on the same bytes; JSON round-trips float64 exactly).
AGREEMENT_TOLERANCE = 1e-4
SIDE_BY_SIDE_ROWS = 5          # predictions per path in the side-by-side log lines


def ensemble_wanted(ctx: StepContext, override: bool | None) -> bool:
    """``--ensemble/--no-ensemble`` when given, else the TRITON_ENSEMBLE setting (default true)."""
    if override is not None:
        return bool(override)
    ctx.settings.require_valid("TRITON_ENSEMBLE")
    return BOOLEANS[(ctx.settings.get("TRITON_ENSEMBLE") or "true").lower()]


def _same_path(a: Any, b: Any) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError, ValueError):
        return False


async def source_ids_for(ctx: StepContext, source: Path | None, labels: tuple[str, ...], digest: str):
    """The ids the ensemble answers with, and a sentence saying where they come from.

    Iteration: the export's ``cvexport.manifest`` (``IterationId``), or the run's export step when the
    model is that export. Project (and publish name, tag ids): this run's project, only when the model
    is this run's export or its iteration is one this run or the settings name; otherwise generated.
    """
    from cvtriton_triton.cv_response import source_ids
    from cvtriton_triton.ensemble import read_export_manifest

    state, settings = ctx.state, ctx.settings
    manifest = await ctx.blocking(read_export_manifest, Path(source)) if source else {}
    from_run = source is not None and any(
        p and _same_path(p, source) for p in (state.get("export_dir"), state.get("export_zip")))
    iteration = str(manifest.get("IterationId") or "") or (state.get("export_iteration") if from_run else None)
    if iteration and iteration.strip("0-") == "":
        iteration = None            # the nil GUID names no iteration (exports made outside Custom Vision)
    known = {state.get("export_iteration"), state.get("iteration_id"), state.get("published_iteration"),
             settings.get("VISION_ITERATION_ID")} - {None, ""}
    project = None
    if from_run or (iteration and iteration in known):
        project = state.get("project_id") or settings.get("VISION_PROJECT_ID")
    publish_name = (state.get("publish_name") or settings.get("VISION_PUBLISH_ITERATION_NAME")) if project else None
    tags, tag_note = {}, ""
    if project:
        tags, tag_note = await _tag_ids(ctx, project)
    try:
        ids = source_ids(labels, digest, project=project, iteration=iteration, tags=tags, publish_name=publish_name)
    except ValueError:
        ctx.log(f"the export names iteration {iteration!r}, which is not a GUID: the ensemble answers with "
                f"generated ids", level="warning")
        ids = source_ids(labels, digest)
    if ids.known:
        where = f"project {ids.project}, iteration {ids.iteration}" + (f" ({ids.publish_name})" if publish_name else "")
        return ids, f"the ensemble answers as Custom Vision {where}; {tag_note or 'tag ids from Custom Vision'}"
    if iteration:
        return ids, (f"the ensemble answers with iteration {ids.iteration} (from the export) and a generated "
                     f"project id {ids.project}: this run does not know the model's project")
    return ids, (f"the ensemble answers with generated ids (project {ids.project}, iteration {ids.iteration}): "
                 f"the model's Custom Vision project and iteration are unknown")


async def _tag_ids(ctx: StepContext, project: str) -> tuple[dict[str, str], str]:
    if not (ctx.settings.get("VISION_TRAINING_ENDPOINT") and ctx.settings.get("VISION_TRAINING_KEY")):
        return {}, "tag ids generated (no Custom Vision training settings to read the project's tags)"
    from cvtriton_core.steps.customvision_common import service_for

    try:
        cv = service_for(ctx)
        async with cv:
            return await cv.get_tags(project), ""
    except UserError as exc:
        ctx.log(f"could not read the project's tag ids ({exc}); the ensemble answers with generated tag ids",
                level="warning")
        return {}, "tag ids generated (reading the project's tags failed)"


@dataclass(frozen=True)
class PathAnswer:
    """One path's answer to the test image."""

    path: str                          # "tensor" (client-side pre/post-processing) | "image" (the ensemble)
                                       # | "customvision" (raw bytes through the container's Custom Vision route)
    model: str                         # the Triton model called
    predictions: tuple[Prediction, ...]
    latency_ms: float                  # this one request, client-side work included
    request_bytes: int                 # request body size
    response: dict | None = None       # the ImagePrediction JSON (image path)

    def to_json(self) -> dict:
        data = {"path": self.path, "model": self.model, "latency_ms": round(self.latency_ms, 3),
                "request_bytes": self.request_bytes, "predictions": [prediction_json(p) for p in self.predictions]}
        if self.response is not None:
            data["response"] = self.response
        return data


def prediction_json(p: Prediction) -> dict:
    item: dict = {"label": p.label, "probability": float(p.probability)}
    if p.box is not None:
        item["box"] = {"left": p.box.left, "top": p.box.top, "width": p.box.width, "height": p.box.height}
    return item


def disagreements(a: tuple[Prediction, ...], b: tuple[Prediction, ...], tolerance: float = AGREEMENT_TOLERANCE,
                  ) -> list[str]:
    """Where two answers to the same image differ (empty when they agree)."""
    if len(a) != len(b):
        return [f"{len(a)} predictions vs {len(b)}"]
    found = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x.label != y.label:
            found.append(f"#{i + 1}: {x.label} vs {y.label}")
        elif abs(x.probability - y.probability) > tolerance:
            found.append(f"#{i + 1} {x.label}: probability {x.probability:.6f} vs {y.probability:.6f}")
        elif (x.box is None) != (y.box is None) or (x.box and y.box and max(
                abs(x.box.left - y.box.left), abs(x.box.top - y.box.top),
                abs(x.box.width - y.box.width), abs(x.box.height - y.box.height)) > tolerance):
            found.append(f"#{i + 1} {x.label}: boxes differ")
    return found


#: What each path sends, for screens and logs.
PATH_TITLES = {"tensor": "tensors to the model", "image": "image bytes to the ensemble",
               "customvision": "image bytes through the Custom Vision route"}


def compare_answers(ctx: StepContext, answers: tuple[PathAnswer, ...]) -> tuple[str, ...]:
    """Where the other paths' answers differ from the first one's (the tensor path: client-side pre- and
    post-processing); empty when they all agree within ``AGREEMENT_TOLERANCE``. A difference is a warning."""
    reference, *others = answers
    differ: list[str] = []
    for answer in others:
        prefix = "" if answer.path == "image" else f"{answer.path} route: "
        differ += [prefix + d for d in disagreements(reference.predictions, answer.predictions)]
    if others:
        ctx.log(f"side by side ({' | '.join(a.path for a in answers)}), by rank:")
        for rank in range(min(SIDE_BY_SIDE_ROWS, max(len(a.predictions) for a in answers))):
            cells = [f"{a.predictions[rank].label} {a.predictions[rank].probability:.4f}"
                     if rank < len(a.predictions) else "—" for a in answers]
            ctx.log(f"  #{rank + 1} " + " | ".join(cells))
    if differ:
        ctx.log(f"the image ensemble and the tensor path disagree: {'; '.join(differ[:5])}", level="warning")
    return tuple(differ)


def agreement(answers: tuple[PathAnswer, ...], differ: tuple[str, ...]) -> str:
    """"image ensemble agrees" (with the tensor path), "image ensemble and Custom Vision route disagree", …;
    "" when only the tensor path answered."""
    names = {"image": "image ensemble", "customvision": "Custom Vision route"}
    others = [names[a.path] for a in answers[1:] if a.path in names]
    if not others:
        return ""
    verb = ("disagree" if differ else "agree") if len(others) > 1 else ("disagrees" if differ else "agrees")
    return f"{' and '.join(others)} {verb}"


def test_summary(preds: tuple[Prediction, ...], median_ms: float, answers: tuple[PathAnswer, ...],
                 differ: tuple[str, ...], reports: tuple) -> str:
    """The test step's one line: best prediction, median latency, agreement, what went wrong in the load test."""
    best = f"{preds[0].label} {preds[0].probability:.2f}" if preds else "no prediction above threshold"
    parts = [f"{best} ({median_ms:.1f} ms median)"]
    if agreement(answers, differ):
        parts.append(agreement(answers, differ))
    errors = sum(r.error_count for r in reports)
    if errors:
        parts.append(f"{errors} load-test errors")
    if any(r.stopped != "completed" for r in reports):
        parts.append("load test stopped early")
    return "; ".join(parts)


def answer_paths(client: Any, model: str, info: Any, tensor: Any, image_bytes: bytes, ensemble: Any,
                 route_url: str | None, *, ssl: bool, headers: dict[str, str] | None,
                 log: Any) -> tuple[PathAnswer, ...]:
    """The test image every way the server serves it (blocking; the thread that made ``client``): tensors to
    the model, bytes to the ensemble (when ``ensemble``), bytes through the Custom Vision route at
    ``route_url`` (when given) — in that order; ``log(line)`` gets each path's first-request figures."""
    answers = [a for a in answer_both(client, model, info, tensor, image_bytes, ensemble) if a is not None]
    if route_url and ensemble is not None:
        answers.append(answer_customvision(route_url, ensemble, image_bytes, ssl=ssl, headers=headers))
    for answer in answers:
        log(f"{answer.path} path ({answer.model}): first request {answer.latency_ms:.1f} ms, "
            f"{answer.request_bytes} bytes sent")
    return tuple(answers)


def answer_both(client: Any, model: str, info: Any, tensor: Any, image_bytes: bytes, ensemble: Any,
                ) -> tuple[PathAnswer, PathAnswer | None]:
    """Send the test image both ways (blocking; one thread): tensors to ``model``, bytes to the ensemble."""
    import json

    import numpy as np

    from cvtriton_triton.cv_response import parse_predictions
    from cvtriton_triton.ensemble_runtime import IMAGE_INPUT, PREDICTION_OUTPUT
    from cvtriton_triton.postprocess import predictions

    outputs, ms = client.timed_infer(model, info.input.name, tensor, [o.name for o in info.outputs])
    tensor_answer = PathAnswer("tensor", model, tuple(predictions(outputs, info)), ms, int(tensor.nbytes))
    if ensemble is None:
        return tensor_answer, None
    batch = np.array([image_bytes], dtype=object).reshape(ensemble.request_shape)
    start = time.perf_counter()
    result = client.infer(ensemble.names.ensemble, IMAGE_INPUT, batch, [PREDICTION_OUTPUT])
    ms = (time.perf_counter() - start) * 1000.0
    document = json.loads(bytes(np.asarray(result[PREDICTION_OUTPUT]).reshape(-1)[0]))
    image_answer = PathAnswer("image", ensemble.names.ensemble, tuple(parse_predictions(document)), ms,
                              len(image_bytes), document)
    return tensor_answer, image_answer


def answer_customvision(url: str, ensemble: Any, image_bytes: bytes, *, ssl: bool,
                        headers: dict[str, str] | None) -> PathAnswer:
    """The test image's raw bytes through the Custom Vision route (blocking), as an app sends them."""
    from cvtriton_triton.customvision_client import predict_image, route_for
    from cvtriton_triton.cv_response import parse_predictions

    document, ms = predict_image(url, route_for(ensemble), image_bytes, ssl=ssl, headers=headers)
    return PathAnswer("customvision", ensemble.names.ensemble, tuple(parse_predictions(document)), ms,
                      len(image_bytes), document)


#: The load report's name for the Custom Vision route's load test.
ROUTE_TARGET = "Custom Vision route"


def load_targets(url: str, model: str, info: Any, tensor: Any, image_bytes: bytes, ensemble: Any,
                 route_url: str | None = None) -> list[tuple[str, Any]]:
    """(where, prebuilt request) for each path the load test replays, in the order of ``answer_paths``:
    tensors to ``model`` and the bytes to the ensemble (if any) at ``url``, then the bytes through the
    Custom Vision route at ``route_url`` (when given), posted as an app posts them."""
    import numpy as np

    from cvtriton_triton.customvision_client import route_for
    from cvtriton_triton.ensemble_runtime import IMAGE_INPUT, PREDICTION_OUTPUT
    from cvtriton_triton.load_test import HttpRequest, infer_request

    targets = [(url, infer_request(model, [(info.input.name, tensor)], [o.name for o in info.outputs]))]
    if ensemble is not None:
        batch = np.array([image_bytes], dtype=object).reshape(ensemble.request_shape)
        targets.append((url, infer_request(ensemble.names.ensemble, [(IMAGE_INPUT, batch)], [PREDICTION_OUTPUT])))
        if route_url:
            targets.append((route_url, HttpRequest(route_for(ensemble), image_bytes,
                                                   (("Content-Type", "application/octet-stream"),), ROUTE_TARGET)))
    return targets


def run_load_tests(ctx: StepContext, targets: list[tuple[str, Any]], spec: Any, *, ssl: bool,
                   headers: dict[str, str] | None, stop: threading.Event) -> tuple:
    """Each target's load test in turn (blocking), with progress lines; stops early when ``stop`` is set."""
    from cvtriton_triton.load_test import run_load

    reports = []
    total = spec.requests * len(targets)
    for position, (url, request) in enumerate(targets):
        if stop.is_set():
            break
        offset = position * spec.requests

        def progress(done: int, _total: int, ok: int, errors: int, target: str = request.target,
                     offset: int = offset) -> None:
            tail = f", {errors} errors" if errors else ""
            ctx.progress(f"load test {target}: {done}/{spec.requests} at concurrency {spec.concurrency}{tail}",
                         done=offset + done, total=total)

        report = run_load(url, request, spec, ssl=ssl, headers=headers, progress=progress, stop=stop)
        ctx.log(report.summary(), source="load", level="warning" if report.errors or not report.ok else "info")
        reports.append(report)
    return tuple(reports)


async def apply_ensemble(ctx: StepContext, repo: Path, name: str, override: bool | None) -> str | None:
    """Write (or, when turned off, remove) the image ensemble beside ``<repo>/<name>``; its name or None."""
    import json

    from cvtriton_triton.ensemble import remove_ensemble, write_ensemble
    from cvtriton_triton.model_repository import SIDECAR_NAME

    if not ensemble_wanted(ctx, override):
        removed = await ctx.blocking(remove_ensemble, repo, name)
        if removed:
            ctx.log(f"image ensemble turned off: removed {', '.join(removed)} from the repository")
        return None
    sidecar = json.loads((repo / name / SIDECAR_NAME).read_text(encoding="utf-8"))
    source = ctx.state.get("model_source")
    ids, origin = await source_ids_for(ctx, Path(source) if source else None, tuple(sidecar["labels"]),
                                       str(sidecar["onnx_sha256"]))
    names = await ctx.blocking(write_ensemble, repo, name, ids)
    ctx.log(f"image ensemble {names.ensemble}: image bytes -> {names.preprocess} -> {name} -> "
            f"{names.postprocess} -> Custom Vision JSON; {origin}")
    return names.ensemble
