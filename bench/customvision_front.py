"""The Custom Vision route's overhead: the front (``cvtriton_triton.customvision_front``, the process the image
runs beside tritonserver) vs calling the ensemble directly — same server, same JPEG, same run.

* baseline: the binary-data infer request the front itself sends, straight to Triton's ``<m>_image``
  (kept-alive ``http.client`` connection per client thread);
* through the front: the JPEG as an app posts it (``POST /customvision/v3.0/Prediction/.../image``,
  ``application/octet-stream``), kept-alive too; the front forwards it to the same ensemble.

Reported at concurrency 1 (the per-request cost) and C (default 8): p50 and throughput, and their ratios
front / direct (goal: p50 within 1.1x, throughput at least 0.9x). Rounds alternate between the contenders;
the median round is reported.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble import camera_jpeg, clients, median_round, verdict  # noqa: E402  (the ensemble bench's helpers)
from local_triton import build_cnn  # noqa: E402

from cvtriton_triton.customvision_front import Target, _infer_body, _prediction_from  # noqa: E402
from cvtriton_triton.ensemble import write_ensemble  # noqa: E402
from cvtriton_triton.ensemble_runtime import IDS_FILENAME  # noqa: E402
from cvtriton_triton.local_server import LocalTritonServer  # noqa: E402
from cvtriton_triton.model_import import import_model  # noqa: E402
from cvtriton_triton.model_repository import write_repository  # noqa: E402

MODEL = "bench"
GOAL_P50 = 1.1
GOAL_RPS = 0.9


def connection(local: threading.local, host: str, port: int) -> http.client.HTTPConnection:
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = local.conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)      # as the front does upstream
    return conn


def post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> http.client.HTTPResponse:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status} {response.data[:200]!r}")
    return response


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per round, contender and concurrency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image", type=Path, help="a JPEG to send (default: a generated 640x480 camera-like one)")
    args = parser.parse_args()
    jpeg = args.image.read_bytes() if args.image else camera_jpeg()
    results: dict = {"requests_per_round": args.requests, "rounds": args.rounds, "cpu_count": os.cpu_count(),
                     "jpeg_bytes": len(jpeg)}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "src").mkdir()
        build_cnn(tmp / "src" / "model.onnx")
        write_repository(import_model(tmp / "src", tmp / "work"), tmp / "repo", MODEL, "1")
        names = write_ensemble(tmp / "repo", MODEL)
        document = tmp / "repo" / names.ensemble / IDS_FILENAME
        target = Target.load(str(document))
        import asyncio

        server = LocalTritonServer(tmp / "repo", log=lambda line: None, workdir=tmp / "triton")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(server.start())
        front = None
        try:
            loop.run_until_complete(server.wait_ready(names.ensemble))
            triton_host, triton_port = server.url.rsplit(":", 1)
            front = subprocess.Popen([sys.executable, "-m", "cvtriton_triton.customvision_front", "--document",
                                      str(document), "--triton", server.url, "--host", "127.0.0.1", "--port", "0",
                                      "--quiet"], stdout=subprocess.PIPE)
            banner = front.stdout.readline().decode()
            front_host, front_port = banner.split("listening on ", 1)[1].split(";", 1)[0].rsplit(":", 1)
            body, header_length = _infer_body(target, jpeg)
            direct_headers = {"Content-Type": "application/octet-stream",
                              "Inference-Header-Content-Length": str(header_length)}
            route = target.route()

            def direct(local):
                response = post(connection(local, triton_host, int(triton_port)),
                                f"/v2/models/{names.ensemble}/infer", body, direct_headers)
                json.loads(_prediction_from(response.data, response.getheader("Inference-Header-Content-Length"),
                                            target.output))

            def routed(local):
                json.loads(post(connection(local, front_host, int(front_port)), route, jpeg,
                                {"Content-Type": "application/octet-stream"}).data)

            for concurrency in sorted({1, args.concurrency}):
                rounds: dict[str, list] = {"direct": [], "front": []}
                front_cpu, front_requests = 0.0, 0
                for _ in range(args.rounds):
                    for name, call in (("direct", direct), ("front", routed)):
                        before = cpu_seconds(front.pid)
                        rounds[name].append(clients(call, args.requests, concurrency))
                        if name == "front":
                            front_cpu += cpu_seconds(front.pid) - before
                            front_requests += args.requests + concurrency          # + the warm-ups
                best = {name: median_round(found) for name, found in rounds.items()}
                results[f"concurrency_{concurrency}"] = {
                    **best, "p50_ratio": best["front"]["p50_ms"] / best["direct"]["p50_ms"],
                    "rps_ratio": best["front"]["rps"] / best["direct"]["rps"],
                    "front_cpu_ms_per_request": 1000 * front_cpu / front_requests, "all_rounds": rounds}
        finally:
            if front is not None:
                front.terminate()
                front.wait(timeout=15)
            loop.run_until_complete(server.stop())
            loop.close()

    print(f"JPEG {len(jpeg) / 1000:.1f} kB, {args.rounds} rounds of {args.requests} requests, {os.cpu_count()} CPUs")
    for key in (k for k in results if k.startswith("concurrency_")):
        r = results[key]
        d, f = r["direct"], r["front"]
        print(f"{key.replace('_', ' ')}: direct {d['rps']:.0f} req/s p50 {d['p50_ms']:.2f} ms | through the front "
              f"{f['rps']:.0f} req/s p50 {f['p50_ms']:.2f} ms | p50 x{r['p50_ratio']:.3f} "
              f"({verdict(r['p50_ratio'] <= GOAL_P50)}: <= {GOAL_P50}), throughput x{r['rps_ratio']:.3f} "
              f"({verdict(r['rps_ratio'] >= GOAL_RPS)}: >= {GOAL_RPS}); the front's own CPU "
              f"{r['front_cpu_ms_per_request']:.3f} ms per request")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "customvision_front.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
