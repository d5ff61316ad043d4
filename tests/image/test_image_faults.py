"""Faults of the image steps, each against the real thing that fails: one clear line naming the cause and the
fix, and nothing left behind (no container, no dangling image, no stray tag)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import tarfile
import time
from pathlib import Path

import pytest

from cvtriton_core.events import LayerProgress, LogLine, StepFailed
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.steps.image_steps import WORKDIR_LABEL, BuildImage, PackageImage, PushImage, RunImage
from cvtriton_standins.docker_daemons import OldDockerEngine, PrivateDockerd
from cvtriton_standins.registry import LocalRegistry
from cvtriton_triton.sample_models import build_classifier


#: For bases that cannot run the ensemble's image (no python3, pip or Triton): the plain model's image.
PLAIN = {"TRITON_ENSEMBLE": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def only_failure(kit, events) -> StepFailed:
    failed = kit.failures(events)
    assert len(failed) == 1, [e.to_dict() for e in failed]
    message = failed[0].message
    assert "\n" not in message and "Traceback" not in message and " — " in message, message
    return failed[0]


@pytest.fixture
def classifier(tmp_path: Path) -> Path:
    return build_classifier("float", tmp_path / "model" / "model.onnx").parent


@pytest.fixture
def sleeping_base(docker_api, kit, standin_base) -> str:
    """A base whose ``tritonserver`` runs but never serves: for 'never ready' and cancellation."""
    from cvtriton_standins.triton_base_image import ROOTFS_REPOSITORY, rootfs_hash

    script = b"#!/bin/sh\necho pretending to be tritonserver \"$@\"\ntrap 'exit 0' TERM\nwhile :; do sleep 0.2; done\n"
    dockerfile = (f"FROM {ROOTFS_REPOSITORY}:{rootfs_hash()}\nCOPY tritonserver /usr/local/bin/tritonserver\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (("Dockerfile", dockerfile, 0o644), ("tritonserver", script, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    name = f"cvtriton-test/sleeping-base:{kit.session}"
    for chunk in docker_api.build(fileobj=buffer, custom_context=True, tag=name, rm=True, decode=True):
        assert "error" not in chunk, chunk
    return name


async def test_no_daemon_says_how_to_start_one(monkeypatch, classifier, standin_base, workspace, kit):
    work = await workspace(classifier, standin_base, key="nodaemon")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/cvtriton-no-such-daemon.sock")
    failed = only_failure(kit, await kit.collect([PackageImage(), BuildImage()], work.run()))
    assert failed.step == "build" and failed.exit_code == 1
    assert failed.message.startswith("no Docker daemon reachable at unix:///tmp/cvtriton-no-such-daemon.sock")
    assert "start Docker" in failed.message and "DOCKER_HOST" in failed.message


async def test_daemon_too_old(monkeypatch, classifier, standin_base, workspace, kit):
    work = await workspace(classifier, standin_base, key="olddaemon")
    with OldDockerEngine() as old:
        monkeypatch.setenv("DOCKER_HOST", old.host)
        failed = only_failure(kit, await kit.collect([PackageImage(), BuildImage()], work.run()))
    assert "too old: Docker Engine 17.03.2-ce (API 1.26)" in failed.message
    assert "20.10 or later" in failed.message and "upgrade Docker Engine" in failed.message


async def test_base_image_missing(classifier, workspace, kit, docker_api):
    missing = f"127.0.0.1:{free_port()}/nvidia/tritonserver:26.10-py3"
    work = await workspace(classifier, missing, key="nobase")
    before = kit.dangling_images(docker_api)
    failed = only_failure(kit, await kit.collect([PackageImage(), BuildImage()], work.run()))
    assert failed.message.startswith(f"base image {missing} is not on this machine and could not be pulled")
    assert "TRITON_BASE_IMAGE" in failed.message
    assert not [t for t in kit.session_tags(docker_api) if "nobase" in t]
    assert kit.dangling_images(docker_api) == before


async def test_build_failure_names_the_instruction(classifier, workspace, kit, docker_api):
    # a base image where /models is a file: the model's COPY cannot succeed
    base = kit.import_tar_image(docker_api, f"cvtriton-test/models-is-a-file:{kit.session}", {"models": b"x"})
    work = await workspace(classifier, base, key="badbuild", **PLAIN)
    before = kit.dangling_images(docker_api)
    events = await kit.collect([PackageImage(), BuildImage()], work.run())
    failed = only_failure(kit, events)
    assert failed.message.startswith("the image build failed at step 4/5 `COPY model_repository/ /models/`: "), failed.message
    assert "last output:" in failed.message
    assert any(isinstance(e, LogLine) and e.step == "build" and e.line.startswith("Step 4/5") for e in events)
    assert kit.dangling_images(docker_api) == before
    assert not [t for t in kit.session_tags(docker_api) if "badbuild" in t]


async def test_pillow_that_cannot_be_installed_says_what_to_do(classifier, workspace, kit, docker_api):
    """A base with python3 but neither Pillow nor pip, no wheels given: the build fails at the Pillow step and
    the first line it quotes names the fix (wheels folder or a package index)."""
    from cvtriton_standins.triton_base_image import ROOTFS_REPOSITORY, rootfs_hash

    work = await workspace(classifier, f"{ROOTFS_REPOSITORY}:{rootfs_hash()}", key="nopillow", IMAGE_PIP_WHEELS="")
    before = kit.dangling_images(docker_api)
    failed = only_failure(kit, await kit.collect([PackageImage(), BuildImage()], work.run()))
    assert failed.message.startswith("the image build failed at step 3/8 `RUN sh /opt/cvtriton/pillow/install-pillow"
                                     '.sh "pillow=='), failed.message
    tail = failed.message.split("(last output: ", 1)[1]
    assert "cvtriton: cannot install pillow==" in tail and "set IMAGE_PIP_WHEELS to a folder" in tail, tail
    assert kit.dangling_images(docker_api) == before


async def test_push_without_credentials_is_refused(classifier, tiny_base, auth_registry, workspace, kit, docker_api):
    work = await workspace(classifier, tiny_base, key="noauth", **PLAIN)
    failed = only_failure(kit, await kit.collect([PackageImage(), BuildImage(), PushImage()],
                                                 work.run(IMAGE_REGISTRY=auth_registry.host)))
    assert failed.step == "push"
    assert failed.message.startswith(f"registry {auth_registry.host} refused the push")
    assert "set IMAGE_REGISTRY_USERNAME and IMAGE_REGISTRY_PASSWORD" in failed.message
    assert not [t for t in kit.session_tags(docker_api) if t.startswith(auth_registry.host)]


async def test_push_with_wrong_password_is_refused_and_never_shown(classifier, tiny_base, auth_registry, workspace,
                                                                   kit, docker_api):
    work = await workspace(classifier, tiny_base, key="badauth", **PLAIN)
    wrong = "Wr0ng-" + kit.session + "-p4ssw0rd"
    events = await kit.collect([PackageImage(), BuildImage(), PushImage()],
                               work.run(IMAGE_REGISTRY=auth_registry.host, IMAGE_REGISTRY_USERNAME=auth_registry.user,
                                        IMAGE_REGISTRY_PASSWORD=wrong))
    failed = only_failure(kit, events)
    assert failed.message.startswith(f"registry {auth_registry.host} refused the push")
    assert "check IMAGE_REGISTRY_USERNAME and IMAGE_REGISTRY_PASSWORD" in failed.message
    assert wrong not in json.dumps([e.to_dict() for e in events], default=str)
    assert not [t for t in kit.session_tags(docker_api) if t.startswith(auth_registry.host)]


async def test_push_with_credentials_from_settings_or_an_earlier_step(classifier, tiny_base, auth_registry,
                                                                      workspace, kit):
    work = await workspace(classifier, tiny_base, key="auth", **PLAIN)
    events = await kit.collect([PackageImage(), BuildImage(), PushImage()],
                               work.run(IMAGE_REGISTRY=auth_registry.host, IMAGE_REGISTRY_USERNAME=auth_registry.user,
                                        IMAGE_REGISTRY_PASSWORD=auth_registry.password))
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    assert auth_registry.password not in json.dumps([e.to_dict() for e in events], default=str)

    # a registry login step hands credentials over through the run; settings, when set, win over them
    run = work.run(IMAGE_REGISTRY=auth_registry.host)
    run.shared["registry_auth"] = {"username": auth_registry.user, "password": auth_registry.password}
    events = await kit.collect([PushImage()], run)
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    assert kit.result_of(events, "push").layers_sent == 0          # everything already there
    run = work.run(IMAGE_REGISTRY=auth_registry.host, IMAGE_REGISTRY_USERNAME=auth_registry.user,
                   IMAGE_REGISTRY_PASSWORD="not-the-password")
    run.shared["registry_auth"] = {"username": auth_registry.user, "password": auth_registry.password}
    assert "refused the push" in only_failure(kit, await kit.collect([PushImage()], run)).message


async def test_registry_unreachable(classifier, tiny_base, workspace, kit, docker_api):
    host = f"127.0.0.1:{free_port()}"
    work = await workspace(classifier, tiny_base, key="unreachable", **PLAIN)
    failed = only_failure(kit, await kit.collect([PackageImage(), BuildImage(), PushImage()],
                                                 work.run(IMAGE_REGISTRY=host)))
    assert failed.message.startswith(f"registry {host} is unreachable from the Docker daemon")
    assert "check IMAGE_REGISTRY" in failed.message
    assert not [t for t in kit.session_tags(docker_api) if t.startswith(host)]


async def test_port_in_use(classifier, standin_base, workspace, kit, docker_api):
    work = await workspace(classifier, standin_base, key="portbusy")
    events = await kit.collect([PackageImage(), BuildImage()], work.run())
    assert not kit.failures(events)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        failed = only_failure(kit, await kit.collect([RunImage(http_port=port)], work.run()))
    assert failed.message.startswith(f"port 127.0.0.1:{port} is already in use"), failed.message
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_container_exits_with_the_model_load_error(classifier, standin_base, workspace, kit, docker_api):
    work = await workspace(classifier, standin_base, key="badmodel")
    config = work.workdir / "model_repository" / work.model_name / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "data"', 'name: "not_the_input"'))
    events = await kit.collect([PackageImage(), BuildImage(), RunImage()], work.run())
    failed = only_failure(kit, events)
    assert failed.message.startswith("the container stopped (exit code 1) before model"), failed.message
    assert f"model '{work.model_name}' failed to load" in failed.message and "missing from config.pbtxt" in failed.message
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_never_ready_shows_the_last_log_line(classifier, sleeping_base, workspace, kit, docker_api):
    work = await workspace(classifier, sleeping_base, key="neverready", **PLAIN)
    events = await kit.collect([PackageImage(), BuildImage(), RunImage(ready_timeout=3)], work.run())
    failed = only_failure(kit, events)
    assert failed.message.startswith(f"model '{work.model_name}' was not ready 3 s after the container started")
    assert "pretending to be tritonserver --model-repository=/models" in failed.message
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_cancel_while_waiting_removes_the_container(classifier, sleeping_base, workspace, kit, docker_api):
    work = await workspace(classifier, sleeping_base, key="cancelrun", **PLAIN)
    assert not kit.failures(await kit.collect([PackageImage(), BuildImage()], work.run()))
    run = work.run()
    started = asyncio.Event()
    seen: list = []

    async def consume() -> None:
        async for event in run_steps([RunImage()], run):
            seen.append(event)
            if isinstance(event, LogLine) and event.source == "container":
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 60)
    assert docker_api.containers(filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 15
    assert run.state.step_status("run-local") == "cancelled"
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_a_container_left_by_a_killed_run_is_removed_by_the_next(classifier, sleeping_base, workspace, kit,
                                                                       docker_api):
    work = await workspace(classifier, sleeping_base, key="leftover", **PLAIN)
    assert not kit.failures(await kit.collect([PackageImage(), BuildImage()], work.run()))
    leftover = docker_api.create_container(sleeping_base, labels={WORKDIR_LABEL: str(work.workdir),
                                                                  "io.cvtriton.role": "run-local"})["Id"]
    docker_api.start(leftover)
    events = await kit.collect([RunImage(ready_timeout=1)], work.run())
    assert any(isinstance(e, LogLine) and "left running by an earlier run" in e.line for e in events)
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_cancel_during_push_stops_it(classifier, standin_base, workspace, kit, docker_api, tmp_path):
    work = await workspace(classifier, standin_base, key="cancelpush")
    assert not kit.failures(await kit.collect([PackageImage(), BuildImage()], work.run()))
    with LocalRegistry(tmp_path / "fresh-registry") as fresh:          # has none of the base's layers
        run = work.run(IMAGE_REGISTRY=fresh.host)
        sending = asyncio.Event()

        async def consume() -> None:
            async for event in run_steps([PushImage()], run):
                if isinstance(event, LayerProgress) and event.status == "transferring":
                    sending.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(sending.wait(), 60)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 10
        assert run.state.step_status("push") == "cancelled"
        assert not [t for t in kit.session_tags(docker_api) if t.startswith(fresh.host)]
        await asyncio.sleep(1.0)
        assert fresh.tags(f"cancelpush-{kit.session}") == []     # no manifest: the push did not complete


async def test_disk_full_while_building(classifier, workspace, kit, monkeypatch):
    with PrivateDockerd(disk_mb=48) as daemon:
        api = daemon.api()
        base = kit.import_tar_image(api, "cvtriton-test/tiny-base:disk", {"etc/": None, "etc/tiny": b"x"})
        work = await workspace(classifier, base, key="diskfull", **PLAIN)
        model = work.workdir / "model_repository" / work.model_name / "1" / "model.onnx"
        model.write_bytes(bytes(range(256)) * (80 * 4096))                   # 80 MB: more than the disk
        monkeypatch.setenv("DOCKER_HOST", daemon.host)
        events = await kit.collect([PackageImage(), BuildImage()], work.run())
        failed = only_failure(kit, events)
        assert failed.message.startswith("disk full while building"), failed.message
        assert f"free space under {daemon.data_root}" in failed.message
        assert not api.images(filters={"dangling": True})
        api.close()


async def test_bad_input_is_refused_before_anything_runs(classifier, tiny_base, workspace, kit):
    work = await workspace(classifier, tiny_base, key="badinput", **PLAIN)
    cases = [
        ([PushImage()], {}, "no registry to push to: IMAGE_REGISTRY is not set and no registry-login step ran"),
        ([PushImage()], {"IMAGE_REGISTRY": "https://myregistry.azurecr.io"}, "IMAGE_REGISTRY='https://myregistry.azurecr.io' is not valid"),
        ([PushImage()], {"IMAGE_REGISTRY": "127.0.0.1:9", "IMAGE_REGISTRY_USERNAME": "u"}, "IMAGE_REGISTRY_PASSWORD is not set"),
        ([PackageImage("Not A Valid/Image")], {}, "--base-image 'Not A Valid/Image' is not a valid image reference"),
        ([PackageImage()], {"TRITON_BASE_IMAGE": "UPPER/case"}, "TRITON_BASE_IMAGE='UPPER/case' is not valid"),
        ([BuildImage()], {}, "no build context in this run"),
        ([RunImage()], {}, "no built image in this run"),
    ]
    for steps, values, message in cases:
        failed = only_failure(kit, await kit.collect(steps, RunContext.create(work.settings(**values), work.workdir / "fresh")
                                                     if isinstance(steps[0], (BuildImage, RunImage)) else work.run(**values)))
        assert failed.exit_code == 2, (message, failed.message)
        assert failed.message.startswith(message), (message, failed.message)
