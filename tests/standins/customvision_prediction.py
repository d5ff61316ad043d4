"""The Custom Vision prediction API of the emulator, answering with the iteration's exported model.

Routes as the SDK's ``CustomVisionPredictionClient`` builds them (base ``{Endpoint}/customvision/v3.x/prediction``):
``POST /{projectId}/classify|detect/iterations/{publishedName}/image[/nostore]`` with header ``Prediction-Key``
and the image as ``multipart/form-data`` (field ``imageData``, what the SDK sends) or
``application/octet-stream``, up to 4 MB. The answer is an ``ImagePrediction`` (``id``, ``project``, ``iteration``,
``created``, ``predictions[]`` of ``probability``, ``tagId``, ``tagName`` and, for detection, ``boundingBox``
normalised to 0-1), computed by running the ONNX model the iteration exports (the same zip the download URI
serves) with onnxruntime. Errors are ``{"code", "message"}``.
"""

from __future__ import annotations

import datetime
import re
import tempfile
import threading
import uuid
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from cvtriton_standins.customvision_records import DOMAIN_BY_ID, ApiError, Export
from cvtriton_standins.customvision_store import Store

PREDICTION_PATH = re.compile(r"^/customvision/v3\.[0-9]/prediction/(?P<p>[^/]+)/(?P<kind>classify|detect)/"
                             r"iterations/(?P<name>[^/]+)/image(?:/nostore)?$", re.IGNORECASE)
MAX_IMAGE_BYTES = 4 * 1024 * 1024
_models: dict[str, Any] = {}
_lock = threading.Lock()


def image_bytes(content_type: str, body: bytes) -> bytes:
    if content_type.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=default_policy).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "imageData":
                return part.get_payload(decode=True) or b""
        raise ApiError(400, "BadRequestImageFormat", "The request has no imageData part.")
    return body


def _model_for(store: Store, project: Any, iteration: Any) -> Any:
    """The imported model of the iteration's ONNX12 export (cached): ``(onnxruntime session, info)``."""
    with _lock:
        if iteration.id in _models:
            return _models[iteration.id]
        import onnxruntime as ort

        from cvtriton_triton.model_import import import_model

        export = Export(platform="ONNX", flavor="ONNX12", started=0.0, token=f"predict-{iteration.id}")
        folder = Path(tempfile.mkdtemp(prefix="cv-predict-"))
        zip_path = folder / "export.zip"
        zip_path.write_bytes(store.export_zip(project, iteration, export))
        imported = import_model(zip_path, folder / "work")
        session = ort.InferenceSession(str(imported.onnx_path), providers=["CPUExecutionProvider"])
        _models[iteration.id] = (session, imported.info)
        return _models[iteration.id]


def predict(store: Store, params: dict[str, str], data: bytes) -> dict[str, Any]:
    from cvtriton_triton.postprocess import predictions
    from cvtriton_triton.preprocess import prepare

    with store.lock:
        project = store.project(params["p"])
        iteration = next((it for it in project.iterations if it.publish_name == params["name"]), None)
        if iteration is None:
            raise ApiError(404, "NotFound", f"Invalid iteration: no iteration is published as {params['name']}.")
        detection = DOMAIN_BY_ID[iteration.domain_id].type == "ObjectDetection"
        tags = {t.name: t.id for t in project.tags.values()}
    if detection != (params["kind"].lower() == "detect"):
        raise ApiError(400, "BadRequest",
                       f"This is a{'n object detection' if detection else ' classification'} project: use "
                       f"{'detect' if detection else 'classify'}.")
    if not data:
        raise ApiError(400, "BadRequestImageFormat", "Bad Request Image Format, Uri: ")
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(400, "BadRequestImageSizeBytes", "Image size is too large: up to 4 MB.")
    session, info = _model_for(store, project, iteration)
    with tempfile.NamedTemporaryFile(suffix=".img") as handle:
        handle.write(data)
        handle.flush()
        try:
            tensor = prepare(Path(handle.name), info)
        except Exception:   # noqa: BLE001 - the service answers a bad image with this code
            raise ApiError(400, "BadRequestImageFormat", "Bad Request Image Format, Uri: ") from None
    names = [o.name for o in info.outputs]
    found = predictions(dict(zip(names, session.run(names, {info.input.name: tensor}))), info)
    answer = []
    for p in found:
        item: dict[str, Any] = {"probability": float(p.probability), "tagId": tags.get(p.label, str(uuid.uuid4())),
                                "tagName": p.label, "tagType": "Regular"}
        if p.box is not None:
            item["boundingBox"] = {"left": p.box.left, "top": p.box.top, "width": p.box.width,
                                   "height": p.box.height}
        answer.append(item)
    return {"id": str(uuid.uuid4()), "project": project.id, "iteration": iteration.id,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "predictions": answer}
