"""LocalTritonServer against the real tritonserver binary: start, readiness, failures, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import onnx
import pytest
import pytest_asyncio
from onnx import TensorProto, helper

from cvtriton_triton import local_server
from cvtriton_triton.errors import ServerError
from cvtriton_triton.local_server import LocalTritonServer

pytestmark = pytest.mark.asyncio(loop_scope="module")


def write_repo(repo: Path, name: str = "tiny") -> Path:
    """A one-op model and the explicit config.pbtxt cvtriton writes for a fixed batch of 1."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["data"], ["model_output"], axes=[2, 3], keepdims=0)], "tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (repo / name / "1").mkdir(parents=True)
    onnx.save(model, repo / name / "1" / "model.onnx")
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        'input [ { name: "data" data_type: TYPE_FP32 dims: [1, 3, 4, 4] } ]\n'
        'output [ { name: "model_output" data_type: TYPE_FP32 dims: [1, 3] } ]\n')
    return repo


def live_processes_mentioning(text: str) -> list[int]:
    """Non-zombie processes whose command line contains ``text`` (server and python-backend stubs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def shm_entries(prefix: str) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(prefix + "*"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory):
    async with LocalTritonServer(write_repo(tmp_path_factory.mktemp("repo"))) as srv:
        await srv.wait_ready("tiny")
        yield srv


async def test_url_and_model_ready(server):
    host, port = server.url.split(":")
    assert host == "127.0.0.1" and int(port) == server.http_port and server.grpc_port != server.http_port
    await server.wait_ready("tiny", timeout=1)  # still ready


async def test_unknown_model_fails_fast(server):
    start = time.monotonic()
    with pytest.raises(ServerError, match="model 'nope' is not in the repository"):
        await server.wait_ready("nope", timeout=30)
    assert time.monotonic() - start < 5


async def test_start_twice_is_refused(server):
    with pytest.raises(ServerError, match="already started"):
        await server.start()


async def test_missing_repository(tmp_path):
    server = LocalTritonServer(tmp_path / "nothing")
    with pytest.raises(ServerError, match="model repository not found"):
        await server.start()
    assert not server.running


async def test_unusable_work_folder_is_a_server_error(tmp_path):
    blocker = tmp_path / "work"
    blocker.write_text("a file where the work folder should be")
    server = LocalTritonServer(write_repo(tmp_path / "repo"), workdir=blocker)
    with pytest.raises(ServerError, match="could not be set up") as caught:
        await server.start()
    assert "\n" not in str(caught.value) and str(blocker) in str(caught.value)
    assert not server.running


async def test_full_lifecycle_streams_log_and_leaves_nothing(tmp_path):
    pid_tag = f"cvtriton_{os.getpid()}_"
    shm_before = set(shm_entries(pid_tag))
    lines: list[str] = []
    server = LocalTritonServer(write_repo(tmp_path / "repo"), log=lines.append, workdir=tmp_path / "work")
    await server.start()
    try:
        assert any("successfully loaded 'tiny'" in line for line in lines), "log lines were not streamed"
        await server.wait_ready("tiny")
        backend_dir = next((tmp_path / "work").iterdir()) / "backends"
        running = live_processes_mentioning(str(backend_dir))
        assert len(running) >= 2, "expected tritonserver plus at least one python-backend stub"
        ours = shm_entries(server._shm_prefix)
        assert ours, "the python backend did not use our shared-memory prefix"
    finally:
        await server.stop()
    assert not server.running
    assert live_processes_mentioning(str(backend_dir)) == []
    assert all(not Path(f"/proc/{pid}").exists() or
               Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z" for pid in running)
    assert shm_entries(server._shm_prefix) == []
    assert set(shm_entries(pid_tag)) <= shm_before
    assert list((tmp_path / "work").iterdir()) == []  # the assembled backend directory is gone
    await server.stop()  # a second stop is harmless


async def test_crashed_server_is_reported_and_cleaned_up(tmp_path):
    """SIGKILL the server behind our back: wait_ready says so, and stubs and shm do not outlive it."""
    server = LocalTritonServer(write_repo(tmp_path / "repo"), workdir=tmp_path / "work")
    await server.start()
    backend_dir = str(next((tmp_path / "work").iterdir()))
    os.kill(server._proc.pid, signal.SIGKILL)
    await server._proc.wait()
    with pytest.raises(ServerError, match="exited"):
        await server.wait_ready("tiny", timeout=10)
    assert live_processes_mentioning(backend_dir) == []
    assert shm_entries(server._shm_prefix) == []


async def test_cancel_during_start_stops_the_process(tmp_path):
    server = LocalTritonServer(write_repo(tmp_path / "repo"), workdir=tmp_path / "work")
    task = asyncio.create_task(server.start())
    deadline = time.monotonic() + 20
    while not (server._proc and live_processes_mentioning("triton_python_backend_stub " + str(tmp_path))):
        assert time.monotonic() < deadline, "the server never got as far as starting a stub"
        await asyncio.sleep(0.02)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.running
    assert live_processes_mentioning(str(tmp_path)) == []
    assert shm_entries(server._shm_prefix) == []
    assert list((tmp_path / "work").iterdir()) == []


async def test_port_taken_between_pick_and_bind_is_retried(tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy])
        real = local_server._free_port
        monkeypatch.setattr(local_server, "_free_port", lambda: next(picks, None) or real())
        lines: list[str] = []
        async with LocalTritonServer(write_repo(tmp_path / "repo"), log=lines.append) as server:
            await server.wait_ready("tiny")
            assert server.http_port != busy
        assert any(f"'127.0.0.1:{busy}' already in use" in line for line in lines)
        assert any("retrying with new ports" in line for line in lines)


async def test_chosen_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server = LocalTritonServer(write_repo(tmp_path / "repo"), http_port=busy)
        with pytest.raises(ServerError, match=f"127.0.0.1:{busy}' already in use") as caught:
            await server.start()
        assert "choose free ports" in str(caught.value)


async def test_server_stops_when_its_owner_is_killed(tmp_path):
    """A Python process that dies without stop() (SIGKILL) must not leave tritonserver running."""
    write_repo(tmp_path / "repo")
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from cvtriton_triton.local_server import LocalTritonServer
        async def main():
            server = LocalTritonServer(Path({str(tmp_path / 'repo')!r}), workdir=Path({str(tmp_path / 'w')!r}))
            await server.start()
            print(server._shm_prefix, flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        prefix = owner.stdout.readline().strip()
        assert prefix and live_processes_mentioning(str(tmp_path / "w"))
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 20
    while live_processes_mentioning(str(tmp_path / "w")) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert live_processes_mentioning(str(tmp_path / "w")) == []
    assert shm_entries(prefix) == []  # Triton shut down gracefully on its SIGTERM and freed its shm
