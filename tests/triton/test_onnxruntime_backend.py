"""The Python-based ``onnxruntime`` backend, exercised through the real tritonserver binary.

One server serves every good model of this module; each config/graph mismatch gets its own
repository, because one model that fails to load makes Triton exit (that is what is checked).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import pytest_asyncio
from onnx import TensorProto, helper, numpy_helper

from cvtriton_triton.errors import ServerError
from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.local_server import LocalTritonServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIZE = 16
LABELS = ["apple", "banana", "cherry"]


def _save(graph: onnx.GraphProto, path: Path, *, ml: bool = False) -> Path:
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid("ai.onnx.ml", 2)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def classifier(path: Path, batch: int | None, *, fp16: bool = False) -> Path:
    """Conv -> pool -> dense -> softmax, like a Custom Vision compact classifier (tiny)."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, len(LABELS))).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=1)]
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    if fp16:  # Custom Vision's ONNX16 flavour: float16 at the edges
        nodes = [helper.make_node("Cast", ["data"], ["x"], to=TensorProto.FLOAT)] + nodes + [
            helper.make_node("Cast", ["prob"], ["model_output"], to=TensorProto.FLOAT16)]
    else:
        nodes = [helper.make_node("Identity", ["data"], ["x"])] + nodes + [
            helper.make_node("Identity", ["prob"], ["model_output"])]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("data", elem, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("model_output", elem, [batch, len(LABELS)])], inits)
    return _save(graph, path)


def multi_output(path: Path) -> Path:
    """Float scores, int64 class ids, string labels (ai.onnx.ml LabelEncoder) and an unlisted output."""
    rng = np.random.default_rng(3)
    fc = numpy_helper.from_array(rng.standard_normal((3, len(LABELS))).astype(np.float32), "fc")
    nodes = [helper.make_node("ReduceMean", ["image_tensor"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "fc"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["detected_scores"], axis=1),
             helper.make_node("ArgMax", ["logits"], ["detected_classes"], axis=1, keepdims=1),
             helper.make_node("LabelEncoder", ["detected_classes"], ["classLabel"], domain="ai.onnx.ml",
                              keys_int64s=list(range(len(LABELS))), values_strings=LABELS,
                              default_string="?"),
             helper.make_node("Identity", ["m"], ["debug"])]
    graph = helper.make_graph(
        nodes, "multi", [helper.make_tensor_value_info("image_tensor", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("detected_scores", TensorProto.FLOAT, [None, len(LABELS)]),
         helper.make_tensor_value_info("detected_classes", TensorProto.INT64, [None, 1]),
         helper.make_tensor_value_info("classLabel", TensorProto.STRING, [None, 1]),
         helper.make_tensor_value_info("debug", TensorProto.FLOAT, [None, 3])], [fc])
    return _save(graph, path, ml=True)


def gather(path: Path) -> Path:
    """Row lookup: an index out of range makes onnxruntime fail that request at run time."""
    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0)], "gather",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 1])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, 1, 4])], [table])
    return _save(graph, path)


def summing(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)], "summing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 2, 2])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")])
    return _save(graph, path)


def tensor(name: str, dtype: str, dims: list[int], extra: str = "") -> str:
    return f'{{ name: "{name}" data_type: {dtype} dims: {dims} {extra}}}'


def write_config(repo: Path, name: str, inputs: list[str], outputs: list[str], *, max_batch: int = 0,
                 extra: str = "", header: str = 'platform: "onnxruntime_onnx"') -> None:
    """config.pbtxt in the format cvtriton's model_repository writes."""
    text = (f'name: "{name}"\n{header}\nmax_batch_size: {max_batch}\n'
            f'input [ {", ".join(inputs)} ]\noutput [ {", ".join(outputs)} ]\n{extra}')
    (repo / name).mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(text)


def run_ort(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


# A short queue delay lets the batcher wait for the other threads' requests: with a bare
# ``dynamic_batching { }`` whether batches form depends on timing, and on a loaded 2-core machine
# every request can arrive alone (seen: 120 executions for 120 requests).
BATCHING = "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    classifier(repo / "fixed" / "1" / "model.onnx", 1)
    write_config(repo, "fixed", [tensor("data", "TYPE_FP32", [1, 3, SIZE, SIZE])],
                 [tensor("model_output", "TYPE_FP32", [1, 3])])
    classifier(repo / "free" / "1" / "model.onnx", None)
    write_config(repo, "free", [tensor("data", "TYPE_FP32", [3, SIZE, SIZE])],
                 [tensor("model_output", "TYPE_FP32", [3])], max_batch=8, extra=BATCHING,
                 header='backend: "onnxruntime"')
    classifier(repo / "half" / "1" / "model.onnx", 1, fp16=True)
    write_config(repo, "half", [tensor("data", "TYPE_FP16", [1, 3, SIZE, SIZE])],
                 [tensor("model_output", "TYPE_FP16", [1, 3])])
    multi_output(repo / "multi" / "1" / "model.onnx")
    write_config(repo, "multi", [tensor("image_tensor", "TYPE_FP32", [3, 8, 8])],
                 [tensor("detected_scores", "TYPE_FP32", [3]), tensor("detected_classes", "TYPE_INT64", [1]),
                  tensor("classLabel", "TYPE_STRING", [1])], max_batch=4, extra="dynamic_batching { }\n")
    gather(repo / "gather" / "1" / "lookup.onnx")
    write_config(repo, "gather", [tensor("idx", "TYPE_INT64", [1])], [tensor("rows", "TYPE_FP32", [1, 4])],
                 max_batch=16, extra='default_model_filename: "lookup.onnx"\n' + BATCHING)
    summing(repo / "flat" / "1" / "model.onnx")
    write_config(repo, "flat", [tensor("x", "TYPE_FP32", [12], "reshape: { shape: [3, 2, 2] } ")],
                 [tensor("s", "TYPE_FP32", [3])], max_batch=4)
    return repo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(repo, tmp_path_factory):
    async with LocalTritonServer(repo, workdir=tmp_path_factory.mktemp("triton")) as srv:
        for name in ("fixed", "free", "half", "multi", "gather", "flat"):
            await srv.wait_ready(name)
        yield srv


@pytest.fixture
def client(server):
    with TritonHttpClient(server.url) as c:
        yield c


class ThreadClients:
    """One TritonHttpClient per worker thread (tritonclient.http is not thread-safe), all closed at exit
    so that the server's shutdown does not wait for idle keep-alive connections."""

    def __init__(self, url: str) -> None:
        self.url, self.local, self.all = url, threading.local(), []

    def get(self) -> TritonHttpClient:
        if not hasattr(self.local, "client"):
            self.local.client = TritonHttpClient(self.url)
            self.all.append(self.local.client)
        return self.local.client

    def __enter__(self) -> "ThreadClients":
        return self

    def __exit__(self, *exc_info) -> None:
        for client in self.all:
            client.close()


def counts(client: TritonHttpClient, model: str) -> tuple[int, int]:
    stats = client.inference_statistics(model)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


async def test_fixed_batch_equals_onnxruntime(client, repo):
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32)
    out = client.infer("fixed", "data", x, ["model_output"])
    expected = run_ort(repo / "fixed" / "1" / "model.onnx", {"data": x})[0]
    assert out["model_output"].dtype == np.float32 and out["model_output"].shape == (1, 3)
    np.testing.assert_allclose(out["model_output"], expected, rtol=1e-5, atol=1e-6)


async def test_free_batch_request_of_several_images(client, repo):
    x = np.random.default_rng(1).uniform(0, 255, (5, 3, SIZE, SIZE)).astype(np.float32)
    out = client.infer("free", "data", x, ["model_output"])
    expected = run_ort(repo / "free" / "1" / "model.onnx", {"data": x})[0]
    np.testing.assert_allclose(out["model_output"], expected, rtol=1e-5, atol=1e-6)


async def test_dynamic_batching_joins_concurrent_requests(server, client, repo):
    rng = np.random.default_rng(2)
    tensors = [rng.uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32) for _ in range(160)]
    expected = run_ort(repo / "free" / "1" / "model.onnx", {"data": np.concatenate(tensors)})[0]
    before = counts(client, "free")

    with ThreadClients(server.url) as clients, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: clients.get().infer("free", "data", tensors[i], ["model_output"])["model_output"],
            range(len(tensors))))
    np.testing.assert_allclose(np.concatenate(results), expected, rtol=1e-5, atol=1e-6)
    inferences, executions = (a - b for a, b in zip(counts(client, "free"), before))
    assert inferences == len(tensors)
    assert executions < inferences, f"no batch formed: {executions} executions for {inferences} requests"


async def test_float16_model(client, repo):
    x = np.random.default_rng(3).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float16)
    out = client.infer("half", "data", x, ["model_output"])
    expected = run_ort(repo / "half" / "1" / "model.onnx", {"data": x})[0]
    assert out["model_output"].dtype == np.float16
    np.testing.assert_allclose(out["model_output"].astype(np.float32), expected.astype(np.float32), rtol=1e-3)


async def test_only_configured_and_requested_outputs(client, repo):
    x = np.random.default_rng(4).uniform(0, 1, (3, 3, 8, 8)).astype(np.float32)
    scores, classes, labels, _ = run_ort(repo / "multi" / "1" / "model.onnx", {"image_tensor": x})
    everything = client.infer("multi", "image_tensor", x)
    assert set(everything) == {"detected_scores", "detected_classes", "classLabel"}  # not "debug"
    np.testing.assert_allclose(everything["detected_scores"], scores, rtol=1e-5, atol=1e-6)
    assert everything["detected_classes"].dtype == np.int64
    np.testing.assert_array_equal(everything["detected_classes"], classes)
    assert [v.decode() for v in everything["classLabel"].ravel()] == list(labels.ravel())
    only = client.infer("multi", "image_tensor", x, ["detected_classes"])
    assert set(only) == {"detected_classes"}
    np.testing.assert_array_equal(only["detected_classes"], classes)


async def test_default_model_filename_and_int64_input(client):
    out = client.infer("gather", "idx", np.array([[2], [9]], dtype=np.int64), ["rows"])
    np.testing.assert_array_equal(out["rows"][:, 0], np.arange(40, dtype=np.float32).reshape(10, 4)[[2, 9]])


async def test_reshape_is_applied_both_ways(client):
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    out = client.infer("flat", "x", x, ["s"])
    np.testing.assert_allclose(out["s"], x.reshape(2, 3, 4).sum(axis=2))


async def test_run_time_error_fails_only_that_request(server, client):
    """Bad requests batched with good ones: each bad one gets its own error, the good ones answers."""
    with pytest.raises(ServerError, match="gather") as caught:
        client.infer("gather", "idx", np.array([[99]], dtype=np.int64), ["rows"])
    assert "\n" not in str(caught.value)
    before = counts(client, "gather")

    def one(clients: ThreadClients, i: int):
        index = 99 if i % 5 == 0 else i % 10
        try:
            return i, clients.get().infer("gather", "idx", np.array([[index]], dtype=np.int64), ["rows"])["rows"]
        except ServerError as exc:
            return i, exc

    with ThreadClients(server.url) as clients, ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(lambda i: one(clients, i), range(120)))
    for i, result in results.items():
        if i % 5 == 0:
            assert isinstance(result, ServerError) and "out of data bounds" in str(result), result
        else:
            assert not isinstance(result, ServerError), result
            np.testing.assert_array_equal(result[0, 0], np.arange(4, dtype=np.float32) + 4 * (i % 10))
    _, executions = (a - b for a, b in zip(counts(client, "gather"), before))
    assert executions < len(results), "requests were never batched, so the test proved nothing"


# ------------------------------------------------------------------ config validation at load time
BAD_CONFIGS = {
    "wrong_input_name": (dict(inputs=[tensor("input_1", "TYPE_FP32", [1, 3, SIZE, SIZE])],
                              outputs=[tensor("model_output", "TYPE_FP32", [1, 3])]),
                         "input(s) ['data'] are missing from config.pbtxt"),
    "wrong_output_name": (dict(inputs=[tensor("data", "TYPE_FP32", [1, 3, SIZE, SIZE])],
                               outputs=[tensor("scores", "TYPE_FP32", [1, 3])]),
                          "config output 'scores' is not an output of the ONNX graph"),
    "wrong_dtype": (dict(inputs=[tensor("data", "TYPE_FP16", [1, 3, SIZE, SIZE])],
                         outputs=[tensor("model_output", "TYPE_FP32", [1, 3])]),
                    "input 'data': the ONNX graph's data type is TYPE_FP32 but the config gives TYPE_FP16"),
    "wrong_dims": (dict(inputs=[tensor("data", "TYPE_FP32", [1, 3, 32, 32])],
                        outputs=[tensor("model_output", "TYPE_FP32", [1, 3])]),
                   f"shape [1, 3, {SIZE}, {SIZE}] but the config gives [1, 3, 32, 32]"),
    "batching_on_fixed_graph": (dict(inputs=[tensor("data", "TYPE_FP32", [3, SIZE, SIZE])],
                                     outputs=[tensor("model_output", "TYPE_FP32", [3])], max_batch=8,
                                     extra="dynamic_batching { }\n"),
                                "max_batch_size is 8 but the ONNX graph's first dimension is fixed"),
    "no_tensors_listed": (dict(inputs=[], outputs=[]), "must list every input and output"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
async def test_config_graph_mismatch_fails_the_load(case, tmp_path):
    spec, reason = BAD_CONFIGS[case]
    classifier(tmp_path / "repo" / case / "1" / "model.onnx", 1)
    if spec["inputs"]:
        write_config(tmp_path / "repo", case, spec["inputs"], spec["outputs"],
                     max_batch=spec.get("max_batch", 0), extra=spec.get("extra", ""))
    else:
        (tmp_path / "repo" / case / "config.pbtxt").write_text(
            f'name: "{case}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n')
    server = LocalTritonServer(tmp_path / "repo", workdir=tmp_path / "w")
    with pytest.raises(ServerError) as caught:
        await server.start()
    message = str(caught.value)
    assert f"model '{case}' failed to load" in message and reason in message, message
    assert "\n" not in message and "At:" not in message  # one line, no python traceback
    assert not server.running


async def test_unloadable_onnx_file_fails_the_load(tmp_path):
    (tmp_path / "repo" / "junk" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "junk" / "1" / "model.onnx").write_bytes(b"this is not a protobuf")
    write_config(tmp_path / "repo", "junk", [tensor("data", "TYPE_FP32", [1])], [tensor("y", "TYPE_FP32", [1])])
    with pytest.raises(ServerError, match="onnxruntime cannot load model.onnx"):
        await LocalTritonServer(tmp_path / "repo", workdir=tmp_path / "w").start()


async def test_gpu_instance_group_fails_without_a_gpu(tmp_path):
    classifier(tmp_path / "repo" / "gpu" / "1" / "model.onnx", 1)
    write_config(tmp_path / "repo", "gpu", [tensor("data", "TYPE_FP32", [1, 3, SIZE, SIZE])],
                 [tensor("model_output", "TYPE_FP32", [1, 3])], extra="instance_group [ { kind: KIND_GPU } ]\n")
    with pytest.raises(ServerError, match="model 'gpu' failed to load"):
        await LocalTritonServer(tmp_path / "repo", workdir=tmp_path / "w").start()
