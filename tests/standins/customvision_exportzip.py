"""What the emulator's download URI serves: a real Custom Vision-format ONNX export zip for the iteration.

Built with the project's own sample-model code (``cvtriton_triton.sample_models``), matching the iteration's
domain (classification or detection, compact or compact [S1]), its trained tags as labels (sorted, as
``labels.txt`` lists them) and the requested flavor (``ONNXFloat16`` gives a float16 model). Zips are cached per
export, so a second download returns the same bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvtriton_standins.customvision_store import Export, Iteration, Project

S1_DOMAINS = {"a1db07ca-a19a-4830-bae8-e004a42dc863", "7ec2ac80-887b-48a6-8df9-8b1357765430"}
_cache: dict[str, bytes] = {}


def build_zip_for(project: "Project", iteration: "Iteration", export: "Export") -> bytes:
    cached = _cache.get(export.token)
    if cached is not None:
        return cached
    from cvtriton_standins.customvision_store import DOMAIN_BY_ID
    from cvtriton_triton import sample_models as sm

    labels = tuple(sorted(name for name, count in iteration.tag_counts.items() if count)) or ("object",)
    detection = DOMAIN_BY_ID[iteration.domain_id].type == "ObjectDetection"
    s1 = iteration.domain_id in S1_DOMAINS
    if detection:
        model = sm.detector_s1_model(labels) if s1 else sm.detector_compact_model(labels)
    else:
        kind = "fp16" if (export.flavor or "").lower() == "onnxfloat16" else "float"
        model = sm.classifier_model(kind, labels, size=300 if s1 else 224)
    with tempfile.TemporaryDirectory(prefix="cv-export-") as tmp:
        path = sm.build_export_zip(model, labels, Path(tmp) / "export.zip",
                                   domain_type="ObjectDetection" if detection else "Classification",
                                   flavor=export.flavor, iteration_id=iteration.id)
        data = path.read_bytes()
    _cache[export.token] = data
    return data
