"""The Custom Vision prediction response (``ImagePrediction``), built from our ``Prediction`` list.

Field names and layout follow the Custom Vision prediction REST API v3.0 (the ``ImagePrediction``
and ``Prediction`` models of ``azure-cognitiveservices-vision-customvision``'s prediction client):

    {"id": <GUID of this prediction>, "project": <project GUID>, "iteration": <iteration GUID>,
     "created": <ISO 8601 UTC>, "predictions": [{"probability", "tagId", "tagName",
     "boundingBox": {"left", "top", "width", "height"}}]}     # boundingBox for detection only

Project, iteration and tag ids are those of the Custom Vision iteration the model was exported from
when they are known; otherwise they are generated from the model file's digest and the tag names
(uuid5), so the same model repository always answers with the same ids.

Pure standard library; also runs inside Triton's python backend (see ``ensemble_runtime``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from .model_info import Box, Prediction

#: Namespace of the ids generated when the source project/iteration is unknown (a fixed random GUID).
GENERATED_NAMESPACE = uuid.UUID("5b0c7e0e-3f55-4c1b-9a2e-6f3f4c0e9d21")


def _guid(value: str) -> str:
    return str(uuid.UUID(str(value)))       # raises ValueError for anything but a GUID


@dataclass(frozen=True)
class SourceIds:
    """The ids a response carries. ``known``: project and iteration are the source's, not generated."""

    project: str
    iteration: str
    tags: Mapping[str, str] = field(default_factory=dict)     # tag name -> tag GUID
    publish_name: str = ""
    known: bool = False

    def tag_id(self, name: str) -> str:
        found = self.tags.get(name)
        return found if found else str(uuid.uuid5(uuid.UUID(self.project), f"tag:{name}"))

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "iteration": self.iteration, "publishName": self.publish_name,
                "tags": dict(self.tags), "known": self.known}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SourceIds":
        return cls(project=_guid(data["project"]), iteration=_guid(data["iteration"]),
                   tags={str(k): _guid(v) for k, v in dict(data.get("tags") or {}).items()},
                   publish_name=str(data.get("publishName") or ""), known=bool(data.get("known")))


def source_ids(labels: Iterable[str], model_digest: str, *, project: str | None = None,
               iteration: str | None = None, tags: Mapping[str, str] | None = None,
               publish_name: str | None = None) -> SourceIds:
    """Ids for a model: the given ones where known (validated GUIDs), generated ones elsewhere.

    ``model_digest`` (the ONNX file's sha256) seeds the generated project and iteration ids; tag ids
    not given are generated from the project id and the tag name, for every label.
    """
    known = bool(project and iteration)
    project_id = _guid(project) if project else str(uuid.uuid5(GENERATED_NAMESPACE, f"project:{model_digest}"))
    iteration_id = _guid(iteration) if iteration else str(uuid.uuid5(GENERATED_NAMESPACE,
                                                                      f"iteration:{model_digest}"))
    given = {str(k): _guid(v) for k, v in dict(tags or {}).items()}
    base = SourceIds(project_id, iteration_id, {}, publish_name or "", known)
    return SourceIds(project_id, iteration_id, {name: given.get(name) or base.tag_id(name) for name in labels},
                     publish_name or "", known)


def created_now() -> str:
    """``created`` as the service writes it: ISO 8601 in UTC with milliseconds and a ``Z``."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _box(box: Box) -> dict[str, float]:
    return {"left": box.left, "top": box.top, "width": box.width, "height": box.height}


def image_prediction(predictions: Iterable[Prediction], ids: SourceIds, *, created: str | None = None,
                     prediction_id: str | None = None) -> dict[str, Any]:
    """The ``ImagePrediction`` object for one image (predictions in the order given)."""
    items = []
    for p in predictions:
        item: dict[str, Any] = {"probability": float(p.probability), "tagId": ids.tag_id(p.label),
                                "tagName": p.label}
        if p.box is not None:
            item["boundingBox"] = _box(p.box)
        items.append(item)
    return {"id": prediction_id or str(uuid.uuid4()), "project": ids.project, "iteration": ids.iteration,
            "created": created or created_now(), "predictions": items}


def to_json_bytes(response: Mapping[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_predictions(data: bytes | str | Mapping[str, Any]) -> list[Prediction]:
    """``ImagePrediction`` JSON -> our ``Prediction`` list (to compare with the client-side path)."""
    body = json.loads(data) if isinstance(data, (bytes, bytearray, str)) else data
    found = []
    for item in body["predictions"]:
        raw = item.get("boundingBox")
        box = Box(float(raw["left"]), float(raw["top"]), float(raw["width"]), float(raw["height"])) if raw else None
        found.append(Prediction(str(item["tagName"]), float(item["probability"]), box))
    return found
