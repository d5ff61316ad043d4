"""Triton python-backend model: the image ensemble's ``postprocess`` step (model outputs -> Custom
Vision ``ImagePrediction`` JSON bytes).

Data, not imported by cvtriton: the repository writer copies it as ``<model>_postprocess/<v>/model.py``
with the package ``cvtriton_runtime`` (cvtriton_triton's own postprocessing modules, unchanged), the
model's ``cvtriton.json`` and the ids to answer with (``customvision.json``) beside it. Request
parameters ``threshold`` and ``top_k`` (forwarded by the ensemble) filter the predictions; errors are
answered per request (``ensemble_runtime.respond``).
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)       # our copy first: this step's folder holds its code and its model facts

from cvtriton_runtime import ensemble_runtime as runtime  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        self.batched = int(config.get("max_batch_size", 0) or 0) > 0
        self.inputs = [entry["name"] for entry in config["input"]]
        self.info = runtime.load_info(HERE)
        self.ids = runtime.load_ids(HERE)

    def execute(self, requests):
        return runtime.respond(pb_utils, requests, self.model_name, self._answer)

    def _answer(self, request):
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
        return [pb_utils.Tensor(runtime.PREDICTION_OUTPUT, documents)]
