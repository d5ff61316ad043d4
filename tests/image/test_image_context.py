"""The build context and Dockerfile, without a daemon: deterministic bytes, layer order, the server command,
labels, and the settings that feed them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from cvtriton_core.settings import Settings
from cvtriton_triton.errors import UserError
from cvtriton_triton.image_context import (DEFAULT_BASE_IMAGE, ImageSpec, check_image_reference, check_registry,
                                           repository_component, write_build_context)
from cvtriton_triton.model_import import import_model
from cvtriton_triton.model_repository import write_repository
from cvtriton_triton.sample_models import build_classifier


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    onnx = build_classifier("float", tmp_path / "src" / "model.onnx")
    imported = import_model(onnx.parent, tmp_path / "import")
    repo = tmp_path / "repo"
    write_repository(imported, repo, "colours")
    write_repository(imported, repo, "another")          # a second model: it must not go into the image
    return repo / "colours"


def spec(**changes) -> ImageSpec:
    values = dict(base_image=DEFAULT_BASE_IMAGE, model_name="colours", model_version="1", tool_version="0.1.0",
                  labels={"io.cvtriton.source.project": "p-1"})
    values.update(changes)
    return ImageSpec(**values)


def test_same_inputs_give_a_byte_identical_context(model_dir, tmp_path):
    first = write_build_context(model_dir, tmp_path / "a", spec())
    (model_dir / "config.pbtxt").touch()                  # a new mtime changes nothing
    second = write_build_context(model_dir, tmp_path / "b", spec())
    assert first.tar_path.read_bytes() == second.tar_path.read_bytes()
    assert first.digest == second.digest and first.tag == second.tag
    assert first.tag.startswith("1-") and first.repository == "cvtriton/colours"


def test_context_holds_only_this_model_with_fixed_metadata(model_dir, tmp_path):
    context = write_build_context(model_dir, tmp_path / "out", spec())
    with tarfile.open(context.tar_path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "Dockerfile"
    assert "model_repository/colours/1/model.onnx" in names and "model_repository/colours/config.pbtxt" in names
    assert not [n for n in names if "another" in n]
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 946684800)}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    # the folder beside the tar holds the same files, for any build tool
    on_disk = sorted(str(p.relative_to(context.folder)) for p in context.folder.rglob("*") if p.is_file())
    assert on_disk == sorted(m.name for m in members if m.isfile())
    assert (context.folder / "Dockerfile").read_text() == context.dockerfile


def test_dockerfile_order_command_ports_and_labels(model_dir, tmp_path):
    dockerfile = write_build_context(model_dir, tmp_path / "out", spec()).dockerfile
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]
    assert instructions == ["FROM", "EXPOSE", "CMD", "COPY", "LABEL"]     # the model's COPY is the last layer
    assert f"FROM {DEFAULT_BASE_IMAGE}\n" in dockerfile
    assert "EXPOSE 8000 8001 8002\n" in dockerfile
    assert "COPY model_repository/ /models/\n" in dockerfile
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert cmd.startswith('CMD ["tritonserver", "--model-repository=/models", "--disable-auto-complete-config"')
    assert "--strict-model-config" not in dockerfile
    for label in ('org.opencontainers.image.title="colours"', 'org.opencontainers.image.version="1"',
                  'io.cvtriton.tool.version="0.1.0"', 'io.cvtriton.source.project="p-1"',
                  f'org.opencontainers.image.base.name="{DEFAULT_BASE_IMAGE}"'):
        assert label in dockerfile


def test_a_model_change_changes_only_the_model_entries(model_dir, tmp_path):
    before = write_build_context(model_dir, tmp_path / "a", spec())
    onnx = model_dir / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    after = write_build_context(model_dir, tmp_path / "b", spec())
    assert after.tag != before.tag

    def dockerfile_up_to_the_copy(text: str) -> str:
        return text.split("LABEL ")[0]

    assert dockerfile_up_to_the_copy(after.dockerfile) == dockerfile_up_to_the_copy(before.dockerfile)


def test_base_image_override_and_bad_input(model_dir, tmp_path):
    custom = write_build_context(model_dir, tmp_path / "a", spec(base_image="127.0.0.1:5000/triton/base:1"))
    assert "FROM 127.0.0.1:5000/triton/base:1\n" in custom.dockerfile
    with pytest.raises(UserError, match="is not a valid image reference"):
        write_build_context(model_dir, tmp_path / "b", spec(base_image="Bad Image"))
    with pytest.raises(UserError, match="config.pbtxt missing"):
        write_build_context(tmp_path / "nowhere", tmp_path / "c", spec())
    with pytest.raises(UserError, match="model version 7 not found"):
        write_build_context(model_dir, tmp_path / "d", spec(model_version="7"))
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists()   # nothing written for bad input


def test_label_values_are_quoted(model_dir, tmp_path):
    context = write_build_context(model_dir, tmp_path / "a",
                                  spec(labels={"io.cvtriton.source.project-name": 'say "hi" $HOME \\ now'}))
    assert 'io.cvtriton.source.project-name="say \\"hi\\" \\$HOME \\\\ now"' in context.dockerfile


@pytest.mark.parametrize("value, ok", [
    ("nvcr.io/nvidia/tritonserver:26.10-py3", True), ("localhost:5000/x:1", True), ("ubuntu", True),
    ("127.0.0.1:5000/a/b@sha256:" + "a" * 64, True), ("UPPER/case", False), ("Not Valid", False),
    ("a//b", False), ("x:", False),
])
def test_image_reference_grammar(value, ok):
    assert (check_image_reference(value) is None) is ok


@pytest.mark.parametrize("value, ok", [
    ("myregistry.azurecr.io", True), ("127.0.0.1:5000", True), ("127.0.0.1:5000/team", True), ("myteam", True),
    ("https://myregistry.azurecr.io", False), ("MyTeam", False), ("a//b", False),
])
def test_registry_grammar(value, ok):
    assert (check_registry(value) is None) is ok


def test_repository_component():
    assert repository_component("My.Model__v2") == "my-model-v2"
    assert repository_component("___") == "model"


def test_settings_declare_the_image_variables():
    settings = Settings({"IMAGE_REGISTRY_PASSWORD": "registry-secret-123", "IMAGE_REGISTRY": "https://x.io"})
    assert settings["TRITON_BASE_IMAGE"] == DEFAULT_BASE_IMAGE          # the default is the pinned release
    assert "registry-secret-123" not in repr(settings)
    problems = [p.name for p in settings.problems("local")]
    assert problems == ["IMAGE_REGISTRY"]
    from cvtriton_core.redact import redact

    assert "registry-secret-123" not in redact("login with registry-secret-123")
    assert Settings({"TRITON_BASE_IMAGE": "Bad Image"}).problems("local")[0].name == "TRITON_BASE_IMAGE"


def test_context_tar_is_a_plain_tar_docker_can_read(model_dir, tmp_path):
    context = write_build_context(model_dir, tmp_path / "a", spec())
    data = context.tar_path.read_bytes()
    assert context.size == len(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:       # uncompressed, as sent to the daemon
        assert tar.extractfile("Dockerfile").read().decode() == context.dockerfile


async def test_source_labels_only_when_the_model_is_this_runs_export(tmp_path):
    from cvtriton_core.events import StepFinished
    from cvtriton_core.pipeline import RunContext, run_steps
    from cvtriton_core.steps.image_steps import PackageImage
    from cvtriton_core.steps.local_target import ImportModel, WriteRepository

    export = build_classifier("float", tmp_path / "export" / "model.onnx").parent
    other = build_classifier("float", tmp_path / "other" / "model.onnx", seed=3).parent
    run = RunContext.create(Settings({"MODEL_NAME": "colours"}), tmp_path / "work")
    run.state.set(export_dir=export, project_id="11111111-2222-3333-4444-555555555555", project_name="shapes",
                  export_iteration="66666666-7777-8888-9999-000000000000", export_flavor="ONNX12")

    async def labels_after_import(source: Path) -> dict:
        run_ = RunContext.create(Settings({"MODEL_NAME": "colours"}), tmp_path / "work")
        events = [e async for e in run_steps([ImportModel(source), WriteRepository(), PackageImage()], run_)]
        return next(e.result.labels for e in events if isinstance(e, StepFinished) and e.step == "package")

    labels = await labels_after_import(export)
    assert labels["io.cvtriton.source.project"] == "11111111-2222-3333-4444-555555555555"
    assert labels["io.cvtriton.source.iteration"] == "66666666-7777-8888-9999-000000000000"
    assert labels["io.cvtriton.source.project-name"] == "shapes"
    assert not [k for k in await labels_after_import(other) if k.startswith("io.cvtriton.source.")]
