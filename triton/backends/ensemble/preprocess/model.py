"""Triton python-backend model: the image ensemble's ``preprocess`` step (encoded image bytes -> tensor).

Data, not imported by cvtriton: the repository writer copies it as ``<model>_preprocess/<v>/model.py``
with the package ``cvtriton_runtime`` (cvtriton_triton's own preprocessing modules, unchanged) and the
model's ``cvtriton.json`` beside it. Runs in the python backend's stub, which needs numpy and Pillow.
A picture that cannot be decoded answers that request with INVALID_ARG (HTTP 400); the other requests
of the batch are unaffected and the server keeps running (``ensemble_runtime.respond``).
"""

import os
import sys

import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)       # our copy first: this step's folder holds its code and its model facts

from cvtriton_runtime import ensemble_runtime as runtime  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.model_name = args["model_name"]
        self.info = runtime.load_info(HERE)

    def execute(self, requests):
        return runtime.respond(pb_utils, requests, self.model_name, self._answer)

    def _answer(self, request):
        images = pb_utils.get_input_tensor_by_name(request, runtime.IMAGE_INPUT)
        if images is None:
            raise runtime.BadRequest(runtime.BAD_IMAGE, f"the request has no input '{runtime.IMAGE_INPUT}'")
        return [pb_utils.Tensor(runtime.PREPROCESSED, runtime.preprocess(images.as_numpy(), self.info))]

    def finalize(self):
        self.info = None
