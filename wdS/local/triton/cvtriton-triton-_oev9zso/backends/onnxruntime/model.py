"""Triton Python-based backend named ``onnxruntime``: serves ``model.onnx`` with onnxruntime (CPU).

Why this exists: the ``tritonserver`` 2.51 binary shipped in the ``nvidia-pytriton`` wheel has only
the python backend; Triton's native onnxruntime backend is not on PyPI. Triton loads a backend
named ``onnxruntime`` (which ``platform: "onnxruntime_onnx"`` maps to) from
``<backend-directory>/onnxruntime/model.py`` through the python backend, so the model repository
we write stays exactly what the official Triton image serves.

Faithfulness to the native backend matters more than brevity here:

* ``initialize`` validates the config against the ONNX graph the way the native backend does
  (names, data types, dims with ``max_batch_size``/``reshape``), so a wrong config fails to LOAD
  with a clear message instead of failing every request later.
* ``execute`` joins the requests the dynamic batcher hands over along axis 0, runs the session
  once and splits the results back, so ``dynamic_batching { }`` forms real batches.

Runs inside the python backend stub: it may import only numpy, onnxruntime and the stub's
``triton_python_backend_utils``; never anything from cvtriton.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# onnxruntime's type strings -> Triton config data types.
_ORT_TO_TRITON = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(string)": "TYPE_STRING",
}


class ConfigMismatch(ValueError):
    """The model configuration does not describe the ONNX graph; the model must not load."""


def _graph_shape(shape) -> list[int] | None:
    """onnxruntime shape (ints, symbolic names, None) -> list with -1 for free dims; None if unknown."""
    if shape is None:
        return None
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def _config_dims(tensor_config: dict) -> list[int]:
    """The dims the graph is compared with: ``reshape.shape`` when present (as the native backend)."""
    reshape = tensor_config.get("reshape")
    if reshape is not None:
        return [int(d) for d in reshape.get("shape", [])]
    return [int(d) for d in tensor_config.get("dims", [])]


def _compare_dims(model, kind, name, graph_shape, dims, max_batch_size) -> None:
    """Same rule as Triton's ``CompareDimsSupported``: a free graph dim matches anything, a fixed
    one must equal the config; with ``max_batch_size > 0`` the graph's first dim must be free and
    the config dims exclude it."""
    if max_batch_size > 0 and (not graph_shape or graph_shape[0] != -1):
        raise ConfigMismatch(
            f"model '{model}', {kind} '{name}': max_batch_size is {max_batch_size} but the ONNX graph's "
            f"first dimension is fixed (graph shape {graph_shape}); set max_batch_size: 0 and list the "
            f"full shape in dims, or export a model with a free batch dimension"
        )
    full = ([-1] if max_batch_size > 0 else []) + list(dims)
    same = len(graph_shape) == len(full) and all(
        g == -1 or g == c for g, c in zip(graph_shape, full)
    )
    if not same:
        batch_note = " (batch dimension -1 added because max_batch_size > 0)" if max_batch_size > 0 else ""
        raise ConfigMismatch(
            f"model '{model}', {kind} '{name}': the ONNX graph has shape {graph_shape} but the config "
            f"gives {full}{batch_note}"
        )


def validate_config(model: str, config: dict, graph_inputs: dict, graph_outputs: dict) -> None:
    """Raise ``ConfigMismatch`` unless ``config`` describes the graph.

    ``graph_inputs``/``graph_outputs`` map name -> (onnxruntime type string, shape list or None).
    """
    max_batch_size = int(config.get("max_batch_size", 0) or 0)
    cfg_inputs = config.get("input") or []
    cfg_outputs = config.get("output") or []
    if not cfg_inputs or not cfg_outputs:
        raise ConfigMismatch(
            f"model '{model}': config.pbtxt must list every input and output (this backend cannot "
            f"auto-complete them); the ONNX graph has inputs {sorted(graph_inputs)} and outputs "
            f"{sorted(graph_outputs)}"
        )
    listed = {c["name"] for c in cfg_inputs}
    unlisted = [n for n in graph_inputs if n not in listed]
    if unlisted:
        raise ConfigMismatch(
            f"model '{model}': the ONNX graph input(s) {unlisted} are missing from config.pbtxt"
        )
    for kind, cfgs, graph in (("input", cfg_inputs, graph_inputs), ("output", cfg_outputs, graph_outputs)):
        for cfg in cfgs:
            name = cfg["name"]
            if name not in graph:
                raise ConfigMismatch(
                    f"model '{model}': config {kind} '{name}' is not an {kind} of the ONNX graph "
                    f"(graph {kind}s: {', '.join(sorted(graph))})"
                )
            ort_type, shape = graph[name]
            expected = _ORT_TO_TRITON.get(ort_type)
            if expected is None:
                raise ConfigMismatch(
                    f"model '{model}', {kind} '{name}': unsupported ONNX type {ort_type} (only plain "
                    f"tensors can be served; remove ZipMap/sequence outputs first)"
                )
            if cfg.get("data_type") != expected:
                raise ConfigMismatch(
                    f"model '{model}', {kind} '{name}': the ONNX graph's data type is {expected} but "
                    f"the config gives {cfg.get('data_type')}"
                )
            graph_shape = _graph_shape(shape)
            if graph_shape is not None:
                _compare_dims(model, kind, name, graph_shape, _config_dims(cfg), max_batch_size)


def _session_options(config: dict) -> ort.SessionOptions:
    """Thread counts from config ``parameters`` (the native backend's keys)."""
    options = ort.SessionOptions()
    params = config.get("parameters") or {}
    for key, attr in (("intra_op_thread_count", "intra_op_num_threads"),
                      ("inter_op_thread_count", "inter_op_num_threads")):
        value = (params.get(key) or {}).get("string_value")
        if value:
            setattr(options, attr, int(value))
    return options


class TritonPythonModel:
    """One model instance: an onnxruntime session plus the validated config."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if os.path.isdir(path):  # the native backend also accepts a directory holding model.onnx
            path = os.path.join(path, "model.onnx")
        if not os.path.isfile(path):
            raise ConfigMismatch(f"model '{self.model_name}': model file not found: {path}")

        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigMismatch(
                    f"model '{self.model_name}': instance_group asks for KIND_GPU but onnxruntime has "
                    f"no CUDA provider here; use KIND_CPU"
                )
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device})]
        try:
            self.session = ort.InferenceSession(path, _session_options(config), providers=providers)
        except Exception as exc:  # onnxruntime's own message says what is wrong with the graph
            raise ConfigMismatch(
                f"model '{self.model_name}': onnxruntime cannot load {filename}: {exc}"
            ) from None
        graph_in = {a.name: (a.type, a.shape) for a in self.session.get_inputs()}
        graph_out = {a.name: (a.type, a.shape) for a in self.session.get_outputs()}
        validate_config(self.model_name, config, graph_in, graph_out)

        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        self.inputs = [(c["name"], c) for c in config["input"]]
        self.outputs = [(c["name"], c) for c in config["output"]]

    # ----------------------------------------------------------------- execute
    def _feeds(self, request):
        """The request's inputs as arrays shaped for the graph (batch dim kept)."""
        feeds = {}
        for name, cfg in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"request is missing input '{name}'")
            array = tensor.as_numpy()
            if cfg.get("reshape") is not None:
                lead = [array.shape[0]] if self.max_batch_size > 0 else []
                array = array.reshape(lead + _config_dims(cfg))
            feeds[name] = array
        return feeds

    def _wanted(self, request):
        names = set(request.requested_output_names())
        return [n for n, _ in self.outputs if not names or n in names]

    def _to_response(self, results, wanted):
        tensors = []
        for name, cfg in self.outputs:
            if name not in wanted:
                continue
            array = results[name]
            if cfg.get("reshape") is not None:
                lead = [array.shape[0]] if self.max_batch_size > 0 else []
                array = array.reshape(lead + [int(d) for d in cfg.get("dims", [])])
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(array)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    @staticmethod
    def _error(message):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))

    def _run(self, feeds, names):
        return dict(zip(names, self.session.run(names, feeds)))

    def execute(self, requests):
        responses = [None] * len(requests)
        ready = []  # (index, feeds, wanted) of the requests whose inputs could be read
        for index, request in enumerate(requests):
            try:
                ready.append((index, self._feeds(request), self._wanted(request)))
            except Exception as exc:
                responses[index] = self._error(f"model '{self.model_name}': {exc}")
        if self.max_batch_size > 0 and len(ready) > 1:
            try:
                self._execute_joined(ready, responses)
                return responses
            except Exception:
                pass  # one bad request must not fail the others: run them one by one below
        for index, feeds, wanted in ready:
            try:
                responses[index] = self._to_response(self._run(feeds, wanted), wanted)
            except Exception as exc:
                responses[index] = self._error(f"model '{self.model_name}': {exc}")
        return responses

    def _execute_joined(self, ready, responses):
        """One session run for all requests: concatenate on axis 0, split the outputs back."""
        sizes = [next(iter(feeds.values())).shape[0] for _, feeds, _ in ready]
        names = [n for n, _ in self.outputs if any(n in wanted for _, _, wanted in ready)]
        joined = {
            name: np.concatenate([feeds[name] for _, feeds, _ in ready], axis=0)
            for name, _ in self.inputs
        }
        results = self._run(joined, names)
        total = sum(sizes)
        for name, array in results.items():
            if array.shape[:1] != (total,):
                raise ValueError(f"output '{name}' does not start with the batch dimension")
        bounds = np.cumsum(sizes)[:-1]
        parts = {name: np.split(array, bounds, axis=0) for name, array in results.items()}
        for position, (index, _, wanted) in enumerate(ready):
            responses[index] = self._to_response(
                {name: part[position] for name, part in parts.items()}, wanted
            )

    def finalize(self):
        self.session = None
