"""What the image ensemble's two python-backend steps do, as plain functions testable without Triton.

The ensemble (written by ``ensemble``) is: ``image`` (encoded JPEG/PNG/BMP/GIF bytes, one per batch
item) -> ``<model>_preprocess`` -> the exported model -> ``<model>_postprocess`` -> ``prediction``
(the Custom Vision ``ImagePrediction`` as UTF-8 JSON bytes, one per batch item).

The steps run the same code as the client-side path: ``preprocess.prepare`` (EXIF orientation,
stretch-resize, channel order, pixel range and float type from the model's metadata) and
``postprocess.predictions`` (labels, S1 boxes, compact-detector decode with anchors and NMS). The
repository writer copies this module and the modules it imports, unchanged, next to each step's
``model.py`` as the package ``cvtriton_runtime``, so a model repository carries its own code and
needs nothing but numpy and Pillow in the server's python: the same files run in the local Triton
and in the official Triton image. Every import here is therefore relative, standard library,
numpy or Pillow.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .cv_response import SourceIds, image_prediction, to_json_bytes
from .errors import UserError
from .model_info import ModelInfo
from .model_repository import read_model_info
from .postprocess import predictions
from .preprocess import prepare

IMAGE_INPUT = "image"                  # ensemble + preprocess input: TYPE_STRING, one encoded image per item
PREPROCESSED = "preprocessed"          # preprocess output -> the model's image input
PREDICTION_OUTPUT = "prediction"       # postprocess + ensemble output: ImagePrediction JSON bytes per item
THRESHOLD_PARAMETER = "threshold"      # request parameter: drop predictions at or below this probability
TOP_K_PARAMETER = "top_k"              # request parameter: keep at most this many predictions
IDS_FILENAME = "customvision.json"     # in the postprocess step (and the ensemble): the ids to answer with
IDS_FORMAT = "cvtriton-customvision/1"

#: Custom Vision prediction API error codes the steps answer with (``CustomVisionErrorCodes``).
BAD_IMAGE = "BadRequestImageFormat"
BAD_PARAMETERS = "BadRequestPredictionInvalidQueryParameters"
_CODED = re.compile(r"\b(BadRequest[A-Za-z]*): (.*)$", re.DOTALL)


class BadRequest(Exception):
    """A request the steps refuse; ``code`` is the Custom Vision error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_error(text: str) -> tuple[str, str] | None:
    """(code, message) from a Triton error that came from a step (Triton prefixes it with
    "in ensemble '<name>', "); None for any other error."""
    match = _CODED.search(text or "")
    return (match.group(1), match.group(2).strip()) if match else None


def _items(images: np.ndarray) -> list[bytes]:
    items = []
    for value in np.asarray(images, dtype=object).reshape(-1):
        if isinstance(value, str):
            value = value.encode("latin-1")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise BadRequest(BAD_IMAGE, f"expected encoded image bytes, got {type(value).__name__}")
        items.append(bytes(value))
    return items


def preprocess(images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Encoded images (a [B, 1] batch, or [1] for a model without batching) -> the model's input
    tensor [B, 3, H, W], each image prepared exactly as the client-side path prepares it."""
    items = _items(images)
    if not items:
        raise BadRequest(BAD_IMAGE, "the request holds no image")
    tensors = []
    for position, data in enumerate(items):
        if not data:
            raise BadRequest(BAD_IMAGE, "the image is empty (0 bytes) — send the file's bytes as the body")
        try:
            tensors.append(prepare(data, info))
        except UserError as exc:
            where = f" (batch item {position})" if len(items) > 1 else ""
            raise BadRequest(BAD_IMAGE, f"{exc.one_line()}{where}") from None
    return np.ascontiguousarray(np.concatenate(tensors, axis=0))


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value)            # ints, floats and numeric strings (gRPC clients often send strings)
    if not math.isfinite(number):
        raise ValueError
    return number


def request_options(parameters: str | Mapping[str, Any] | None) -> tuple[float | None, int | None]:
    """(threshold, top_k) from a request's parameters (the JSON text the python backend gives, or a
    dict); unknown parameters are ignored, bad values -> ``BadRequest``."""
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters) if parameters.strip() else {}
        except ValueError:
            parameters = {}
    parameters = dict(parameters or {})
    threshold = top_k = None
    if parameters.get(THRESHOLD_PARAMETER) is not None:
        try:
            threshold = _number(parameters[THRESHOLD_PARAMETER])
            if not 0.0 <= threshold <= 1.0:
                raise ValueError
        except (TypeError, ValueError):
            raise BadRequest(BAD_PARAMETERS, f"parameter '{THRESHOLD_PARAMETER}' must be a probability from 0 "
                                             f"to 1, not {parameters[THRESHOLD_PARAMETER]!r}") from None
    if parameters.get(TOP_K_PARAMETER) is not None:
        try:
            value = _number(parameters[TOP_K_PARAMETER])
            if value != int(value) or value < 1:
                raise ValueError
            top_k = int(value)
        except (TypeError, ValueError, OverflowError):
            raise BadRequest(BAD_PARAMETERS, f"parameter '{TOP_K_PARAMETER}' must be a whole number from 1 up, "
                                             f"not {parameters[TOP_K_PARAMETER]!r}") from None
    return threshold, top_k


def postprocess(outputs: Mapping[str, np.ndarray], info: ModelInfo, ids: SourceIds, *, batched: bool,
                threshold: float | None = None, top_k: int | None = None) -> np.ndarray:
    """The model's outputs for B images -> B ``ImagePrediction`` JSON documents, shaped [B, 1]
    (``batched``) or [1]; predictions as ``postprocess.predictions`` gives them, best first."""
    arrays = {name: np.asarray(array) for name, array in outputs.items()}
    count = next(iter(arrays.values())).shape[0] if arrays else 0
    documents = []
    for b in range(count):
        one = {name: array[b:b + 1] for name, array in arrays.items()}
        found = predictions(one, info, threshold=threshold)
        if top_k is not None:
            found = found[:top_k]
        documents.append(to_json_bytes(image_prediction(found, ids)))
    result = np.empty((count, 1) if batched else (count,), dtype=object)
    result.reshape(-1)[:] = documents
    return result


def load_info(folder: Path | str) -> ModelInfo:
    """The model's description the repository writer copied into a step's folder."""
    return read_model_info(Path(folder))


def load_ids(folder: Path | str) -> SourceIds:
    """The ids the postprocess step answers with."""
    data = json.loads((Path(folder) / IDS_FILENAME).read_text(encoding="utf-8"))
    if data.get("format") != IDS_FORMAT:
        raise ValueError(f"{IDS_FILENAME}: unknown format {data.get('format')!r}")
    return SourceIds.from_dict(data["ids"])


def respond(pb_utils: Any, requests: list, model_name: str, answer: Callable[[Any], list]) -> list:
    """The python backend's ``execute`` for a step: one response per request, in order, with the output
    tensors ``answer(request)`` returns. A ``BadRequest`` answers that request with INVALID_ARG (HTTP 400)
    where this Triton has error codes (23.06 on); any other exception answers it with an error naming the
    model — one request never takes the step down, and the other requests of the batch are unaffected.
    ``pb_utils`` is ``triton_python_backend_utils``, passed in: only the backend's stub can import it, and
    ``pb_utils.TritonError`` exists only once the stub has started, not at import time."""
    def error(message: str, invalid_argument: bool = False) -> Any:
        code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if invalid_argument else None
        failure = pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
        return pb_utils.InferenceResponse(output_tensors=[], error=failure)

    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(answer(request)))
        except BadRequest as exc:
            responses.append(error(str(exc), invalid_argument=True))
        except Exception as exc:      # noqa: BLE001 — never let one request take the step down
            responses.append(error(f"model '{model_name}': {type(exc).__name__}: {exc}"))
    return responses
