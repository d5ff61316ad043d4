"""The image ensemble vs the tensor path, and our load generator vs NVIDIA's perf_analyzer — same server, same run.

1. Bytes per request: a JPEG through ``<m>_image`` vs the float32 tensor to ``<m>`` (goal: >= 10x fewer).
2. Throughput and p50 at concurrency C (default 8) of real clients, each request doing the client's own
   work: tensor path = decode + resize + tensor (``preprocess.prepare``) -> infer -> ``predictions``;
   image path = send the JPEG -> parse the JSON (goal: image path within 1.2x of the tensor path).
3. ``cvtriton_triton.load_test`` vs perf_analyzer on the same model and concurrency, both paths
   (goal: ours >= 0.9x perf_analyzer's throughput, so the tool measures the server, not itself).

Rounds alternate between the contenders and the median round is reported, so a neighbour's load on a
shared machine shifts both sides alike. perf_analyzer is optional (``--perf-analyzer``, see bench/README.md
for the bench-only install); without it part 3 is skipped and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_triton import build_cnn  # noqa: E402  (the same 224x224 CNN as the other local bench)

from cvtriton_triton.cv_response import parse_predictions  # noqa: E402
from cvtriton_triton.ensemble import find_ensemble, write_ensemble  # noqa: E402
from cvtriton_triton.ensemble_runtime import IMAGE_INPUT, PREDICTION_OUTPUT  # noqa: E402
from cvtriton_triton.infer_client import TritonHttpClient  # noqa: E402
from cvtriton_triton.load_test import LoadSpec, infer_request, run_load  # noqa: E402
from cvtriton_triton.local_server import LocalTritonServer  # noqa: E402
from cvtriton_triton.model_import import import_model  # noqa: E402
from cvtriton_triton.model_repository import write_repository  # noqa: E402
from cvtriton_triton.postprocess import predictions  # noqa: E402
from cvtriton_triton.preprocess import prepare  # noqa: E402

MODEL = "bench"
GOAL_BYTES = 10.0
GOAL_LATENCY = 1.2
GOAL_GENERATOR = 0.9


def camera_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A phone-camera-like picture (smooth shapes, sensor noise) at quality 85: ~30-60 KB, like the JPEGs
    apps send to Custom Vision today."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([120 + 60 * np.sin(x / 90), 110 + 50 * np.cos(y / 70), 100 + 40 * np.sin((x + y) / 120)], -1)
    for _ in range(6):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(30, 120)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    pixels += rng.normal(0, 3, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def clients(call, requests: int, concurrency: int) -> dict:
    """``call`` from ``concurrency`` threads, ``requests`` times in all (plus one warm-up per thread)."""
    local = threading.local()
    latencies: list[float] = []

    def one(_):
        start = time.perf_counter()
        call(local)
        latencies.append((time.perf_counter() - start) * 1000)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: call(local), range(concurrency)))       # warm-up: connections, caches
        start = time.perf_counter()
        list(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
    return {"rps": requests / wall, "p50_ms": statistics.median(latencies)}


def median_round(rounds: list[dict]) -> dict:
    return sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]


def perf_analyzer(binary: Path, url: str, model: str, concurrency: int, input_data: Path | None,
                  window_ms: int, tmp: Path) -> dict:
    out = tmp / f"pa-{model}-{time.monotonic_ns()}.csv"
    cmd = [str(binary), "-m", model, "-u", url, "-i", "http", "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-interval", str(window_ms), "--max-trials", "10", "--stability-percentage", "60",
           "-f", str(out)]
    if input_data is not None:
        cmd += ["--input-data", str(input_data)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_pa_env(binary))
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}")
    row = next(csv.DictReader(out.read_text().splitlines()))
    return {"rps": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1000.0}


def _pa_env(binary: Path) -> dict:
    """perf_analyzer needs libb64 and libcudart.so.12: PERF_ANALYZER_LIBS (colon-separated) is prepended."""
    env = dict(os.environ)
    extra = os.environ.get("PERF_ANALYZER_LIBS", "")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (extra, env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def ours(url: str, request, concurrency: int, requests: int) -> dict:
    report = run_load(url, request, LoadSpec(requests=requests, concurrency=concurrency))
    if report.errors:
        raise RuntimeError(f"load generator errors: {report.describe_errors()}")
    return {"rps": report.throughput_rps, "p50_ms": report.p50_ms}


def verdict(ok: bool) -> str:
    return "goal met" if ok else "GOAL MISSED"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per round and contender")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image", type=Path, help="a JPEG to send (default: a generated 640x480 camera-like one)")
    parser.add_argument("--perf-analyzer", type=Path, default=os.environ.get("PERF_ANALYZER"),
                        help="perf_analyzer binary (bench-only install, see bench/README.md)")
    parser.add_argument("--pa-window-ms", type=int, default=3000)
    args = parser.parse_args()
    c = args.concurrency
    jpeg = args.image.read_bytes() if args.image else camera_jpeg()
    results: dict = {"concurrency": c, "requests_per_round": args.requests, "rounds": args.rounds,
                     "cpu_count": os.cpu_count(), "jpeg_bytes": len(jpeg)}

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "src").mkdir()
        build_cnn(tmp / "src" / "model.onnx")
        imported = import_model(tmp / "src", tmp / "work")
        info = imported.info
        write_repository(imported, tmp / "repo", MODEL, "1")
        names = write_ensemble(tmp / "repo", MODEL)
        ensemble = find_ensemble(tmp / "repo", MODEL)
        outputs = [o.name for o in info.outputs]
        image_batch = np.array([jpeg], dtype=object).reshape(ensemble.request_shape)

        # 1. bytes on the wire per request (the HTTP body each path sends)
        tensor_request = infer_request(MODEL, [(info.input.name, prepare(jpeg, info))], outputs)
        image_request = infer_request(names.ensemble, [(IMAGE_INPUT, image_batch)], [PREDICTION_OUTPUT])
        results["bytes"] = {"tensor": len(tensor_request.body), "image": len(image_request.body),
                            "ratio": len(tensor_request.body) / len(image_request.body)}

        async with LocalTritonServer(tmp / "repo", workdir=tmp / "triton") as server:
            await server.wait_ready(names.ensemble)
            url = server.url

            def client(local) -> TritonHttpClient:
                if not hasattr(local, "client"):
                    local.client = TritonHttpClient(url)
                return local.client

            def tensor_path(local):
                tensor = prepare(jpeg, info)                              # the client's own preprocessing
                found = predictions(client(local).infer(MODEL, info.input.name, tensor, outputs), info)
                assert found

            def image_path(local):
                answer = client(local).infer(names.ensemble, IMAGE_INPUT, image_batch, [PREDICTION_OUTPUT])
                found = parse_predictions(bytes(answer[PREDICTION_OUTPUT].reshape(-1)[0]))
                assert found

            # 2. real clients, both paths, alternating rounds
            rounds: dict[str, list] = {"tensor": [], "image": []}
            for _ in range(args.rounds):
                for name, call in (("tensor", tensor_path), ("image", image_path)):
                    rounds[name].append(await asyncio.to_thread(clients, call, args.requests, c))
            clients_result = {name: median_round(r) for name, r in rounds.items()}
            clients_result["rps_ratio"] = clients_result["tensor"]["rps"] / clients_result["image"]["rps"]
            clients_result["p50_ratio"] = clients_result["image"]["p50_ms"] / clients_result["tensor"]["p50_ms"]
            results["clients"] = {**clients_result, "all_rounds": rounds}

            # 3. our load generator vs perf_analyzer, same model and concurrency, alternating rounds
            generator: dict = {}
            if args.perf_analyzer and Path(args.perf_analyzer).exists():
                image_data = tmp / "image.json"
                # perf_analyzer's "b64" is the tensor's serialized bytes: for BYTES, a 4-byte length + the data
                serialized = struct.pack("<I", len(jpeg)) + jpeg
                image_data.write_text(json.dumps({"data": [{IMAGE_INPUT: {
                    "b64": base64.b64encode(serialized).decode(), "shape": [1]}}]}))   # one picture per request
                for path, request, model, data in (("tensor", tensor_request, MODEL, None),
                                                   ("image", image_request, names.ensemble, image_data)):
                    pa_rounds, our_rounds = [], []
                    for _ in range(args.rounds):
                        pa_rounds.append(await asyncio.to_thread(perf_analyzer, args.perf_analyzer, url, model, c,
                                                                 data, args.pa_window_ms, tmp))
                        n = max(args.requests, int(pa_rounds[-1]["rps"] * args.pa_window_ms / 1000))
                        our_rounds.append(await asyncio.to_thread(ours, url, request, c, n))
                    pa, us = median_round(pa_rounds), median_round(our_rounds)
                    generator[path] = {"perf_analyzer": pa, "ours": us, "ratio": us["rps"] / pa["rps"],
                                       "all_rounds": {"perf_analyzer": pa_rounds, "ours": our_rounds}}
            else:
                generator["skipped"] = "no perf_analyzer (pass --perf-analyzer PATH; see bench/README.md)"
                for path, request in (("tensor", tensor_request), ("image", image_request)):
                    generator[path] = {"ours": await asyncio.to_thread(ours, url, request, c, args.requests)}
            results["generator"] = generator

    b, cl, g = results["bytes"], results["clients"], results["generator"]
    print(f"machine: {os.cpu_count()} CPUs; concurrency {c}; {args.rounds} rounds x {args.requests} requests; "
          f"JPEG {len(jpeg)} bytes")
    print(f"1. bytes per request: tensor {b['tensor']} vs image {b['image']} -> {b['ratio']:.1f}x fewer "
          f"(goal >= {GOAL_BYTES:g}x: {verdict(b['ratio'] >= GOAL_BYTES)})")
    t, i = cl["tensor"], cl["image"]
    print(f"2. clients incl. their own work, c={c}:  tensor {t['rps']:.1f} req/s p50 {t['p50_ms']:.2f} ms | "
          f"image {i['rps']:.1f} req/s p50 {i['p50_ms']:.2f} ms")
    print(f"   throughput tensor/image {cl['rps_ratio']:.2f}x, p50 image/tensor {cl['p50_ratio']:.2f}x "
          f"(goal <= {GOAL_LATENCY:g}x: {verdict(max(cl['rps_ratio'], cl['p50_ratio']) <= GOAL_LATENCY)})")
    if "skipped" in g:
        print(f"3. {g['skipped']}; our generator alone: tensor {g['tensor']['ours']['rps']:.1f} req/s, "
              f"image {g['image']['ours']['rps']:.1f} req/s")
    else:
        for path in ("tensor", "image"):
            pa, us = g[path]["perf_analyzer"], g[path]["ours"]
            print(f"3. {path} path: ours {us['rps']:.1f} req/s (p50 {us['p50_ms']:.2f} ms) vs perf_analyzer "
                  f"{pa['rps']:.1f} req/s (p50 {pa['p50_ms']:.2f} ms) -> {g[path]['ratio']:.2f}x "
                  f"(goal >= {GOAL_GENERATOR:g}x: {verdict(g[path]['ratio'] >= GOAL_GENERATOR)})")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ensemble.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
