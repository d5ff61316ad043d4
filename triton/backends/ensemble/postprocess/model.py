"""Triton python-backend model: the image ensemble's ``postprocess`` step (model outputs -> Custom
Vision ``ImagePrediction`` JSON bytes).

Data, not imported by cvtriton: the repository writer copies it as ``<model>_postprocess/<v>/model.py``
with the package ``cvtriton_runtime`` (cvtriton_triton's own postprocessing modules, unchanged), the
model's ``cvtriton.json`` and the ids to answer with (``customvision.json``) beside it. Request
parameters ``threshold`` and ``top_k`` (forwarded by the ensemble) filter the predictions.
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
        config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        self.batched = int(config.get("max_batch_size", 0) or 0) > 0
        self.inputs = [entry["name"] for entry in config["input"]]
        self.info = runtime.load_info(HERE)
        self.ids = runtime.load_ids(HERE)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                parameters = request.parameters() if hasattr(request, "parameters") else ""   # Triton < 23.03: none
                threshold, top_k = runtime.request_options(parameters)
                outputs = {}
                for name in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"the request has no input '{name}'")
                    outputs[name] = tensor.as_numpy()
                documents = runtime.postprocess(outputs, self.info, self.ids, batched=self.batched,
                                                threshold=threshold, top_k=top_k)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(runtime.PREDICTION_OUTPUT, documents)]))
            except runtime.BadRequest as exc:
                responses.append(_error(str(exc), invalid_argument=True))
            except Exception as exc:      # never let one request take the step down
                responses.append(_error(f"model '{self.model_name}': {type(exc).__name__}: {exc}"))
        return responses

    def finalize(self):
        self.info = self.ids = None
