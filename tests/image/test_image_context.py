"""The build context and Dockerfile, without a daemon: deterministic bytes, layer order, the server command,
labels, and the settings that feed them."""

from __future__ import annotations

import json
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


# ---- an image that serves the Custom Vision route (the repository has the image ensemble) -----------------
@pytest.fixture
def ensemble_dir(tmp_path: Path) -> Path:
    from cvtriton_triton.cv_response import source_ids
    from cvtriton_triton.ensemble import write_ensemble

    onnx = build_classifier("float_dynamic", tmp_path / "src" / "model.onnx")
    imported = import_model(onnx.parent, tmp_path / "import")
    repo = tmp_path / "repo"
    write_repository(imported, repo, "colours")
    ids = source_ids(imported.labels, "digest", project="0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
                     iteration="aaaaaaaa-1111-4222-8333-444444444444", publish_name="prod")
    write_ensemble(repo, "colours", ids)
    write_repository(imported, repo, "another")
    write_ensemble(repo, "another")                       # another model's ensemble stays out of the image
    return repo / "colours"


def instructions(dockerfile: str) -> list[str]:
    return [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]


def test_ensemble_image_layers_command_and_labels(ensemble_dir, tmp_path):
    from cvtriton_triton.image_context import CUSTOMVISION_PORT, pillow_requirement

    context = write_build_context(ensemble_dir, tmp_path / "out", spec())
    dockerfile = context.dockerfile
    # Pillow and the front before anything model-specific; the model's COPY is still the last layer
    assert instructions(dockerfile) == ["FROM", "COPY", "RUN", "COPY", "EXPOSE", "CMD", "COPY", "LABEL"]
    assert dockerfile.splitlines()[4] == f"FROM {DEFAULT_BASE_IMAGE}"
    assert "COPY pillow/ /opt/cvtriton/pillow/\n" in dockerfile
    assert f'RUN sh /opt/cvtriton/pillow/install-pillow.sh "{pillow_requirement()}"\n' in dockerfile
    assert "COPY cvtriton/ /opt/cvtriton/\n" in dockerfile
    assert f"EXPOSE 8000 8001 8002 {CUSTOMVISION_PORT}\n" in dockerfile
    installer = (context.folder / "pillow" / "install-pillow.sh").read_text()
    assert 'python3 -c "import PIL"' in installer and "PIP_BREAK_SYSTEM_PACKAGES=1" in installer
    assert [f for f in context.files if f.startswith("pillow/")] == ["pillow/install-pillow.sh"]   # no wheels
    cmd = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["python3", "/opt/cvtriton/image_supervisor.py"]
    server, front = cmd[2:cmd.index("::")], cmd[cmd.index("::") + 1:]
    assert server[0] == "tritonserver" and "--model-repository=/models" in server
    assert front == ["python3", "/opt/cvtriton/customvision_front.py",
                     "--document=/models/colours_image/customvision.json", "--triton=127.0.0.1:8000",
                     f"--port={CUSTOMVISION_PORT}"]
    route = "/customvision/v3.0/Prediction/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0/classify/iterations/prod/image"
    assert context.labels["io.cvtriton.scoring.port"] == str(CUSTOMVISION_PORT) == str(context.scoring_port)
    assert context.labels["io.cvtriton.customvision.route"] == route == context.front.route
    # the context holds the model, its three entries (with the ensemble's empty version folder), the front
    with tarfile.open(context.tar_path) as tar:
        names = {m.name: m for m in tar.getmembers()}
    for entry in ("colours", "colours_preprocess", "colours_postprocess", "colours_image"):
        assert f"model_repository/{entry}/config.pbtxt" in names
    assert names["model_repository/colours_image/1"].isdir()
    assert not [n for n in names if "another" in n or "__pycache__" in n]
    assert {"cvtriton/customvision_front.py", "cvtriton/image_supervisor.py"} <= set(names)


def test_ensemble_context_is_deterministic_and_ignores_bytecode(ensemble_dir, tmp_path):
    first = write_build_context(ensemble_dir, tmp_path / "a", spec())
    cache = ensemble_dir.parent / "colours_preprocess" / "1" / "cvtriton_runtime" / "__pycache__"
    cache.mkdir()
    (cache / "preprocess.cpython-311.pyc").write_bytes(b"written by a local Triton run")
    second = write_build_context(ensemble_dir, tmp_path / "b", spec())
    assert first.tar_path.read_bytes() == second.tar_path.read_bytes()


def test_pillow_wheels_go_into_the_context_and_install_without_an_index(ensemble_dir, tmp_path):
    from cvtriton_triton.image_context import pillow_version

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / f"pillow-{pillow_version()}-cp312-cp312-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"a wheel")
    (wheels / "pillow-1.0.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"another version: not copied")
    (wheels / "numpy-1.0-cp312-none-any.whl").write_bytes(b"not Pillow: not copied")
    context = write_build_context(ensemble_dir, tmp_path / "out", spec(pip_wheels=wheels))
    plain = write_build_context(ensemble_dir, tmp_path / "plain", spec())
    assert context.dockerfile == plain.dockerfile        # the wheels change the context, not the Dockerfile
    assert sorted(f for f in context.files if f.startswith("pillow/")) == ["pillow/install-pillow.sh",
                                                                           f"pillow/{wheel.name}"]
    assert '--no-index --find-links $here' in (context.folder / "pillow" / "install-pillow.sh").read_text()


def test_pillow_wheels_folder_without_the_wheel_is_refused_before_writing(ensemble_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, says in ((empty, "no pillow=="), (tmp_path / "missing", "is not a folder")):
        with pytest.raises(UserError, match=says) as caught:
            write_build_context(ensemble_dir, tmp_path / "out", spec(pip_wheels=folder))
        assert "pip download pillow==" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_plain_model_keeps_the_plain_image(model_dir, tmp_path):
    context = write_build_context(model_dir, tmp_path / "out", spec())
    assert context.front is None and context.scoring_port == 8000
    assert "io.cvtriton.scoring.port" not in context.labels and "pip" not in context.dockerfile


def test_the_shipped_front_files_use_the_standard_library_only():
    """The official image's python3 has no extra packages: the files copied to /opt/cvtriton import nothing
    else (and nothing of this package)."""
    import ast
    import sys

    from cvtriton_triton import image_context

    for name in image_context.FRONT_MODULES:
        path = Path(image_context.__file__).parent / f"{name}.py"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: relative import"
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in sys.stdlib_module_names or module == "__future__", (name, module)


async def test_package_step_logs_the_route_and_the_pillow_source(tmp_path):
    from cvtriton_core.events import LogLine, StepFinished
    from cvtriton_core.pipeline import RunContext, run_steps
    from cvtriton_core.steps.image_steps import PackageImage
    from cvtriton_core.steps.local_target import ImportModel, WriteRepository

    model = build_classifier("float", tmp_path / "m" / "model.onnx").parent
    run = RunContext.create(Settings({"MODEL_NAME": "colours"}), tmp_path / "work")
    events = [e async for e in run_steps([ImportModel(model), WriteRepository(), PackageImage()], run)]
    result = next(e.result for e in events if isinstance(e, StepFinished) and e.step == "package")
    assert result.scoring_port == 8080 and result.customvision_route.startswith("/customvision/v3.0/Prediction/")
    lines = [e.line for e in events if isinstance(e, LogLine) and e.step == "package"]
    assert any("Custom Vision route on port 8080" in line and "liveness, readiness and scoring" in line
               for line in lines)
    assert any(line.startswith("Pillow for the ensemble: kept if the base image has it") for line in lines)
    # with the ensemble off: the plain image, and a wheels folder is said to be unused (not silently dropped)
    run = RunContext.create(Settings({"MODEL_NAME": "colours", "TRITON_ENSEMBLE": "false",
                                      "IMAGE_PIP_WHEELS": str(tmp_path)}), tmp_path / "work2")
    events = [e async for e in run_steps([ImportModel(model), WriteRepository(), PackageImage()], run)]
    result = next(e.result for e in events if isinstance(e, StepFinished) and e.step == "package")
    assert result.scoring_port == 8000 and result.customvision_route is None
    assert any(isinstance(e, LogLine) and "IMAGE_PIP_WHEELS is not used" in e.line for e in events)
