"""Make a Custom Vision classification graph servable by Triton.

Triton's onnxruntime backend can only return tensors: a ZipMap output (``loss``,
seq(map(string,float))) fails with "Unsupported ONNX Type 'ONNX_TYPE_SEQUENCE'" at load time. Custom
Vision computes those maps from a float probability tensor that already exists inside the graph, so
we expose that tensor as the output instead, drop the string ``classLabel`` (the client maps the
argmax to labels.txt itself) and remove whatever no longer feeds an output. The arithmetic is
untouched, so the probabilities are bit-for-bit the ones the ZipMap carried.
"""

from __future__ import annotations

import copy

import onnx
from onnx import helper

from cvtriton_triton.errors import ModelImportError
from cvtriton_triton.onnx_inspect import REEXPORT_FIX, image_input, type_spec

SERVABLE_DTYPES = {"float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"}


def _readable(dtype: str) -> str:
    return "string" if dtype == "object" else dtype


def _referenced_names(node: onnx.NodeProto) -> set[str]:
    """Inputs of a node, including outer-scope names used inside If/Loop/Scan bodies."""
    names = {name for name in node.input if name}
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for inner in graph.node:
                names |= _referenced_names(inner)
    return names


def _prune(graph: onnx.GraphProto) -> None:
    """Remove nodes, initializers and value_info that no graph output depends on."""
    needed = {out.name for out in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):          # nodes are topologically sorted
        if any(out in needed for out in node.output):
            kept.append(node)
            needed |= _referenced_names(node)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    produced = {out for node in kept for out in node.output}
    all_weights = {init.name for init in graph.initializer}
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    # real inputs (the image) always stay; weights listed as inputs (IR < 4) stay only if still used
    inputs = [v for v in graph.input if v.name not in all_weights or v.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _drop_unused_domains(model: onnx.ModelProto) -> None:
    used = {node.domain or "" for node in model.graph.node}
    imports = [op for op in model.opset_import if op.domain in ("", "ai.onnx") or op.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(imports)


def _probability_output(model: onnx.ModelProto, zipmap: onnx.NodeProto) -> onnx.ValueInfoProto:
    """A graph output for the tensor a ZipMap reads, typed from shape inference (or, failing that,
    [batch, number of ZipMap labels] float)."""
    source = zipmap.input[0]
    inferred = onnx.shape_inference.infer_shapes(model)
    for value in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if value.name == source and value.type.tensor_type.shape.dim:
            return copy.deepcopy(value)
    labels = next((a for a in zipmap.attribute if a.name in ("classlabels_strings", "classlabels_int64s")), None)
    count = len(labels.strings or labels.ints) if labels is not None else None
    batch = image_input(model).shape[0]
    return helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT,
                                         ["batch" if batch == -1 else 1, count or "classes"])


def make_servable(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Return (a rewritten copy whose outputs are all numeric tensors, what was changed in words).

    With a float probability output already present, only string and sequence/map outputs are
    pruned. With ZipMap-only outputs, the ZipMap's float input becomes the output. A graph left
    with no output, or one that fails ``onnx.checker``, is a ``ModelImportError``.
    """
    result = copy.deepcopy(model)
    graph = result.graph
    producers = {out: node for node in graph.node for out in node.output}
    specs = [type_spec(v.name, v.type) for v in graph.output]
    has_scores = any(s.dtype in ("float32", "float16") and len(s.shape) == 2 for s in specs)
    changes: list[str] = []
    kept: list[onnx.ValueInfoProto] = []
    for value, spec in zip(graph.output, specs):
        if spec.dtype in SERVABLE_DTYPES:
            kept.append(value)
            continue
        producer = producers.get(value.name)
        if producer is not None and producer.op_type == "ZipMap" and not has_scores:
            replacement = _probability_output(result, producer)
            if all(v.name != replacement.name for v in kept):
                kept.append(replacement)
            changes.append(f"output '{value.name}' ({_readable(spec.dtype)}) replaced by its probability tensor "
                           f"'{replacement.name}'")
            has_scores = True
        elif spec.dtype == "object":
            changes.append(f"output '{value.name}' (string) removed: the client names the scores from labels.txt")
        else:
            changes.append(f"output '{value.name}' ({spec.dtype}) removed: Triton cannot return sequences or maps")
    if not changes:
        return result, changes
    if not kept:
        raise ModelImportError("the model has no output Triton can return (no tensor outputs)", REEXPORT_FIX)
    del graph.output[:]
    graph.output.extend(kept)
    _prune(graph)
    _drop_unused_domains(result)
    try:
        onnx.checker.check_model(result, full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"the rewritten model is invalid: {first}", REEXPORT_FIX) from None
    return result, changes
