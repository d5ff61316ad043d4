"""Triton python-backend model: the image ensemble's ``preprocess`` step (encoded image bytes -> tensor).

Data, not imported by cvtriton: the repository writer copies it as ``<model>_preprocess/<v>/model.py``
with the package ``cvtriton_runtime`` (cvtriton_triton's own preprocessing modules, unchanged) and the
model's ``cvtriton.json`` beside it. Runs in the python backend's stub, which needs numpy and Pillow.
A picture that cannot be decoded answers that request with INVALID_ARG (HTTP 400); the other requests
of the batch are unaffected and the server keeps running.
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)       # our copy first: this step's folder holds its code and its model facts

from cvtriton_runtime import ensemble_runtime as runtime  # noqa: E402


def _error(message, invalid_argument=False):
    """An error response; INVALID_ARG (HTTP 400) for a bad request where this Triton has error codes
    (23.06 on). ``pb_utils.TritonError`` exists only once the stub has started, not at import time."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if invalid_argument else None
    error = pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


class TritonPythonModel:
    def initialize(self, args):
        self.model_name = args["model_name"]
        self.info = runtime.load_info(HERE)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, runtime.IMAGE_INPUT)
                if images is None:
                    raise runtime.BadRequest(runtime.BAD_IMAGE, f"the request has no input '{runtime.IMAGE_INPUT}'")
                tensor = runtime.preprocess(images.as_numpy(), self.info)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(runtime.PREPROCESSED, tensor)]))
            except runtime.BadRequest as exc:
                responses.append(_error(str(exc), invalid_argument=True))
            except Exception as exc:      # never let one request take the step down
                responses.append(_error(f"model '{self.model_name}': {type(exc).__name__}: {exc}"))
        return responses

    def finalize(self):
        self.info = None
