"""The Triton image end to end against the real Docker daemon and a real registry: package → build → push →
pull back by digest → run the pulled image → infer through the local target's client → stop; for a
classification, an FP16 and a detection model. Then: a model-only rebuild reuses every layer but the last,
and pushing it sends only that layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from cvtriton_core.adapters.docker_engine import DockerEngine
from cvtriton_core.events import LayerProgress, LogLine
from cvtriton_core.steps.image_steps import WORKDIR_LABEL, BuildImage, PackageImage, PushImage, RunImage
from cvtriton_core.steps import local_target   # (TestModel imported by name would be collected by pytest)
from cvtriton_triton.ensemble import ensemble_names
from cvtriton_triton.model_repository import read_model_info
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import build_classifier, build_detector

MODELS = {
    "classification": lambda path: build_classifier("float", path),
    "fp16": lambda path: build_classifier("fp16", path),
    "detection": lambda path: build_detector("compact", path),
}


@pytest.fixture
def test_image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    pixels = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    pixels[60:180, 80:240] = (30, 200, 40)
    path = tmp_path / "test.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    return path


def expected_predictions(model_dir: Path, image: Path) -> list:
    info = read_model_info(model_dir)
    tensor = prepare(image, info)
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in info.outputs]
    return predictions(dict(zip(names, session.run(names, {info.input.name: tensor}))), info)


@pytest.mark.parametrize("key", list(MODELS))
async def test_build_push_pull_run_infer(key, tmp_path, standin_base, registry, workspace, test_image, kit, docker_api):
    model = MODELS[key](tmp_path / "model" / "model.onnx")
    work = await workspace(model.parent, standin_base, key=key)
    run = work.run(IMAGE_REGISTRY=registry.host)
    events = await kit.collect([PackageImage(), BuildImage(), PushImage()], run)
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    package, build, push = (kit.result_of(events, s) for s in ("package", "build", "push"))

    # the context is kept and is what was built; the Dockerfile starts FROM the base and ends with the model
    assert (package.context_dir / "Dockerfile").read_text() == package.dockerfile
    assert package.dockerfile.splitlines()[4] == f"FROM {standin_base}"
    docker_lines = [e.line for e in events if isinstance(e, LogLine) and e.step == "build"]
    assert any(line.startswith("Step 4/5 : COPY model_repository/ /models/") for line in docker_lines)
    assert build.image_id.startswith("sha256:") and build.size > 0
    labels = docker_api.inspect_image(build.image_id)["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == work.model_name
    assert labels["io.cvtriton.model.version"] == "1"

    # the push reported its layers and a digest the registry serves
    layer_events = [e for e in events if isinstance(e, LayerProgress) and e.step == "push"]
    assert {e.status for e in layer_events} >= {"waiting"} and layer_events[-1].direction == "push"
    assert push.digest.startswith("sha256:") and push.reference == f"{registry.host}/{key}-{kit.session}@{push.digest}"
    assert 0 < push.bytes_sent <= push.image_size

    # pull back by digest into a daemon that no longer has the image: the same image id comes back
    with DockerEngine.connect() as engine:
        for tag in docker_api.inspect_image(build.image_id)["RepoTags"]:
            docker_api.remove_image(tag)
        assert engine.image(build.image_id) is None
        engine.pull(push.reference, on_layer=lambda update: None)
        pulled = engine.image(push.reference)
        assert pulled is not None and pulled["Id"] == build.image_id

    # run the pulled image; the local target's client sends the test image to it
    run = work.run()
    events = await kit.collect([RunImage(), local_target.TestModel(test_image, requests=3)], run)
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    started, tested = kit.result_of(events, "run-local"), kit.result_of(events, "test")
    assert started.url.startswith("127.0.0.1:")
    assert any(isinstance(e, LogLine) and e.source == "container" and "Started HTTPService" in e.line for e in events)
    expected = expected_predictions(work.workdir / "model_repository" / work.model_name, test_image)
    assert [p.label for p in tested.predictions] == [p.label for p in expected]
    np.testing.assert_allclose([p.probability for p in tested.predictions], [p.probability for p in expected],
                               rtol=1e-3, atol=1e-3)
    # the repository has the image ensemble (on by default); the test answers the ways the container serves
    ensemble = ensemble_names(work.model_name).ensemble
    assert (work.workdir / "model_repository" / ensemble).is_dir()
    if any(f.startswith(f"model_repository/{ensemble}/") for f in package.files):
        assert [a.path for a in tested.answers] == ["tensor", "image"] and not tested.disagreements
    else:
        assert [a.path for a in tested.answers] == ["tensor"]
        assert f"the server does not serve the image ensemble {ensemble}" in tested.summary
        if key == "classification":           # asked for explicitly, it is a failure, not a silent skip
            events = await kit.collect([RunImage(), local_target.TestModel(test_image, requests=1, ensemble=True)],
                                       work.run())
            assert f"does not serve the image ensemble '{ensemble}'" in kit.failures(events)[0].message
    # the run ended: its container is stopped and removed
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})
    assert any(isinstance(e, LogLine) and "stopped and removed" in e.line for e in events)


async def test_model_only_change_rebuilds_and_pushes_only_the_last_layer(tmp_path, standin_base, registry,
                                                                         workspace, kit, docker_api):
    first = build_classifier("float", tmp_path / "a" / "model.onnx", seed=1)
    work = await workspace(first.parent, standin_base, key="rebuild")
    run = work.run(IMAGE_REGISTRY=registry.host)
    events = await kit.collect([PackageImage(), BuildImage(), PushImage()], run)
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    old_build = kit.result_of(events, "build")

    # the same inputs give a byte-identical context and the same image
    tar_before = (work.workdir / "image" / "context.tar").read_bytes()
    events = await kit.collect([PackageImage(), BuildImage()], work.run())
    assert (work.workdir / "image" / "context.tar").read_bytes() == tar_before
    assert kit.result_of(events, "build").image_id == old_build.image_id

    # a new model under the same name and version
    second = build_classifier("float", tmp_path / "b" / "model.onnx", seed=2)
    from cvtriton_core.steps.local_target import ImportModel, WriteRepository

    run = work.run(IMAGE_REGISTRY=registry.host)
    events = await kit.collect([ImportModel(second.parent), WriteRepository(), PackageImage(), BuildImage(),
                                PushImage()], run)
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    new_build, new_push = kit.result_of(events, "build"), kit.result_of(events, "push")
    assert new_build.image_id != old_build.image_id

    # from the build output: every step before the model's COPY came from the cache, the COPY did not
    by_number = {s.number: s for s in new_build.steps}
    copy = next(s for s in new_build.steps if s.instruction.startswith("COPY "))
    assert all(by_number[n].cached for n in range(2, copy.number)), new_build.steps
    assert not copy.cached
    # from the image history: all filesystem layers but the last are the old image's
    old_layers = docker_api.inspect_image(old_build.image_id)["RootFS"]["Layers"]
    new_layers = docker_api.inspect_image(new_build.image_id)["RootFS"]["Layers"]
    assert len(new_layers) == len(old_layers)
    assert new_layers[:-1] == old_layers[:-1] and new_layers[-1] != old_layers[-1]
    # and the push sent that one layer only
    model_layer = next(h for h in docker_api.history(new_build.image_id) if "COPY" in h["CreatedBy"])
    assert new_push.layers_sent == 1 and new_push.layers_total == len(new_layers)
    assert new_push.bytes_sent == model_layer["Size"]
    assert new_push.bytes_sent < new_push.image_size / 50
