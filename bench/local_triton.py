"""Local Triton vs onnxruntime in-process (concurrency 1 and 8) and JPEG preprocessing, as same-run ratios."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.local_server import LocalTritonServer
from cvtriton_triton.model_import import import_model
from cvtriton_triton.model_repository import write_repository
from cvtriton_triton.preprocess import prepare

LABELS = ["a", "b", "c", "d", "e"]


def build_cnn(path: Path) -> None:
    """A compact-size CNN: 224x224 BGR input, free batch dim, 3 strided convs, pooling, dense, softmax."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    inits = [weight("w1", 16, 3, 3, 3), weight("w2", 32, 16, 3, 3), weight("w3", 64, 32, 3, 3),
             weight("fc", 64, len(LABELS)), numpy_helper.from_array(np.array([1 / 255.0], np.float32), "scale")]
    nodes = [
        helper.make_node("Mul", ["data", "scale"], ["x0"]),
        helper.make_node("Conv", ["x0", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["model_output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "bench_cnn",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, 224, 224])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [None, len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    for key, value in {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": "NominalRange_0_255"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    (path.parent / "labels.txt").write_text("\n".join(LABELS) + "\n")


def throughput(call, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []

    def one(_):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1000)

    for _ in range(min(10, requests)):
        call()  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {"rps": requests / wall, "p50_ms": statistics.median(latencies),
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))]}


def preprocessing(tmp: Path, info, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([(x / 16) % 256, (y / 12) % 256, ((x + y) / 28) % 256], axis=-1).astype(np.uint8)
    pixels = np.clip(pixels.astype(np.int16) + rng.integers(-12, 12, pixels.shape), 0, 255).astype(np.uint8)
    jpeg = tmp / "big.jpg"
    Image.fromarray(pixels).save(jpeg, quality=90)

    def ours():
        prepare(jpeg, info)

    def baseline():  # what a straightforward client does: decode everything, then resize
        with Image.open(jpeg) as im:
            arr = np.asarray(im.convert("RGB").resize((info.width, info.height), Image.BICUBIC), np.float32)
        arr[..., ::-1].transpose(2, 0, 1)[None].copy()

    def timed(fn):
        fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    ours_ms, base_ms = timed(ours), timed(baseline)
    return {"ours_ms": ours_ms, "baseline_full_decode_ms": base_ms, "speedup": base_ms / ours_ms}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="preprocessing repeats")
    args = parser.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "src").mkdir()
        build_cnn(tmp / "src" / "model.onnx")
        imported = import_model(tmp / "src", tmp / "work")
        info = imported.info
        write_repository(imported, tmp / "repo", "bench", "1")
        tensor = np.random.default_rng(2).uniform(0, 255, (1, 3, 224, 224)).astype(np.float32)

        session = ort.InferenceSession(str(imported.onnx_path), providers=["CPUExecutionProvider"])
        results: dict = {"ort": {}, "triton": {}}
        for c in (1, 8):
            results["ort"][c] = throughput(lambda: session.run(None, {"data": tensor}), args.requests, c)

        async with LocalTritonServer(tmp / "repo", workdir=tmp / "triton") as server:
            await server.wait_ready("bench")
            per_thread = threading.local()   # tritonclient.http connections belong to one thread

            def triton_call():
                if not hasattr(per_thread, "client"):
                    per_thread.client = TritonHttpClient(server.url)
                per_thread.client.infer("bench", "data", tensor, ["model_output"])

            for c in (1, 8):
                results["triton"][c] = await asyncio.to_thread(throughput, triton_call, args.requests, c)
        results["preprocess_4000x3000_jpeg"] = preprocessing(tmp, info, args.repeats)

    print(f"{'':28}{'onnxruntime':>14}{'local Triton':>14}{'Triton/ORT':>12}")
    for c in (1, 8):
        o, t = results["ort"][c], results["triton"][c]
        print(f"throughput c={c} (req/s)      {o['rps']:14.1f}{t['rps']:14.1f}{t['rps'] / o['rps']:12.3f}")
        print(f"p50 latency c={c} (ms)        {o['p50_ms']:14.2f}{t['p50_ms']:14.2f}{t['p50_ms'] / o['p50_ms']:12.2f}")
    p = results["preprocess_4000x3000_jpeg"]
    print(f"preprocess 4000x3000 JPEG: ours {p['ours_ms']:.1f} ms vs full decode {p['baseline_full_decode_ms']:.1f} ms"
          f" -> {p['speedup']:.2f}x faster")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "local_triton.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
