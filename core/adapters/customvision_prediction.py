"""Custom Vision's own prediction API (``CustomVisionPredictionClient`` of
``azure-cognitiveservices-vision-customvision``, imported lazily): the published iteration's answer for an
image, to put next to the Triton endpoint's (the comparison the original workflow made by hand). The
``/image/nostore`` routes are used, so the comparison leaves no prediction stored in the project."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cvtriton_core.errors import UserError

MAX_IMAGE_BYTES = 4 * 1024 * 1024       # the prediction API's limit


@dataclass(frozen=True)
class CloudPredictions:
    predictions: tuple[dict, ...]        # the shape ``local --json`` prints: label, probability[, box]
    latency_ms: float


def predict(endpoint: str, key: str, project_id: str, published_name: str, image: bytes, *,
            detection: bool) -> CloudPredictions:
    """One image through the published iteration; one-line :class:`UserError` when the service refuses."""
    if len(image) > MAX_IMAGE_BYTES:
        raise UserError(f"the test image is {len(image) / 1e6:.1f} MB, over the prediction API's 4 MB",
                        "use a smaller image for the comparison")
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from msrest.authentication import ApiKeyCredentials
    from msrest.exceptions import ClientRequestError, HttpOperationError

    client = CustomVisionPredictionClient(endpoint.rstrip("/"), ApiKeyCredentials(in_headers={"Prediction-key": key}))
    call = client.detect_image_with_no_store if detection else client.classify_image_with_no_store
    started = time.perf_counter()
    try:
        answer = call(project_id, published_name, image)
    except HttpOperationError as exc:
        status = getattr(exc.response, "status_code", None)
        code = getattr(getattr(exc, "error", None), "code", None) or ""
        message = getattr(getattr(exc, "error", None), "message", None) or str(exc)
        fix = {401: "check VISION_PREDICTION_KEY (the prediction resource's key, not the training key)",
               404: "check VISION_PROJECT_ID and that VISION_PUBLISH_ITERATION_NAME is published (publish step)",
               429: "the prediction resource is rate limited: retry later"}.get(status or 0, "check the prediction "
                                                                                        "resource")
        raise UserError(f"the Custom Vision prediction API refused the image (HTTP {status} {code}: "
                        f"{' '.join(str(message).split())[:200]})", fix) from None
    except ClientRequestError as exc:
        raise UserError(f"cannot reach the Custom Vision prediction endpoint {endpoint} ({type(exc).__name__})",
                        "check VISION_PREDICTION_ENDPOINT and the network") from None
    latency = (time.perf_counter() - started) * 1000.0
    found = []
    for p in sorted(answer.predictions or [], key=lambda p: -(p.probability or 0.0)):
        item: dict = {"label": p.tag_name, "probability": float(p.probability or 0.0)}
        box = getattr(p, "bounding_box", None)
        if detection and box is not None:
            item["box"] = {"left": box.left, "top": box.top, "width": box.width, "height": box.height}
        found.append(item)
    return CloudPredictions(tuple(found), latency)
