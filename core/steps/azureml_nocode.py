"""No-code Triton on Azure ML (``DEPLOYMENT_MODE=no-code``): what the ``deploy`` step checks and does before
its deployment names a ``triton_model`` asset instead of an image.

* Before the run: no image steps in the same run, no ``--deploy-image``, no image ensemble about to be written
  (its python-backend steps need Pillow, which Azure ML's Triton image does not have).
* Before anything is created: the repository is one Azure ML's Triton can load — every model folder has its
  ``config.pbtxt``, no model uses the python backend, every version folder is a number without leading zeros
  (Triton ignores the others), and at least one holds a model file.
* The asset: named after the model (``MODEL_NAME``, characters Azure ML refuses become ``-``) and versioned after
  the source Custom Vision iteration (``<first 8 hex digits of the iteration id>-<MODEL_VERSION>``) when the
  model is this run's export, else after the repository's content (``sha-<12 hex digits>``). It is tagged with
  the repository's sha256: an existing version with the same digest is reused (nothing uploaded), one with
  another digest is refused (Azure ML model versions cannot change). The upload runs in a daemon thread
  (:func:`in_daemon_thread`) so that a cancel or a terminated run never waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvtriton_core.deployment_mode import DEPLOYMENT_MODES, IMAGE_STEPS, NO_CODE
from cvtriton_core.errors import UserError
from cvtriton_core.event_text import size_text
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import BOOLEANS, Settings
from cvtriton_core.steps.azureml_state import STATE_MODEL_ASSET

DIGEST_TAG = "cvtriton-repository-sha256"
ASSET_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")
MODEL_FILES = ("model.onnx", "model.plan", "model.pt", "model.savedmodel", "model.graphdef")
_PYTHON_BACKEND = re.compile(r'^\s*backend\s*:\s*"python"', re.MULTILINE)
_ENSEMBLE_FIX = "set TRITON_ENSEMBLE=false (or pass --no-ensemble), or use DEPLOYMENT_MODE=container"


def check_run(settings: Settings, run_steps: tuple[str, ...], ensemble: bool | None, image: str | None) -> None:
    """What a no-code deploy refuses before the run starts (one line each)."""
    limits = DEPLOYMENT_MODES[NO_CODE].cannot
    clash = [n for n in run_steps if n in IMAGE_STEPS]
    if clash:
        raise UserError(f"step {clash[0]} builds or pushes an image, which a no-code deployment does not use",
                        f"drop {', '.join(clash)} from --steps (no-code: …,import,repository,deploy,endpoint-test), "
                        "or use DEPLOYMENT_MODE=container")
    if image:
        raise UserError("--deploy-image names an image, but a no-code deployment runs Azure ML's own Triton image",
                        "drop --deploy-image, or pass --deployment-mode container")
    if "repository" in run_steps:
        settings.require_valid("TRITON_ENSEMBLE")
        wanted = ensemble if ensemble is not None else BOOLEANS[(settings.get("TRITON_ENSEMBLE") or "true").lower()]
        if wanted:
            raise UserError("the image ensemble (python-backend models) cannot run in a no-code deployment: "
                            f"{limits}", _ENSEMBLE_FIX)


def repository_problem(repo: Path) -> tuple[str, str] | None:
    """(cause, fix) for the first thing in ``repo`` that Azure ML's Triton cannot load, or None."""
    models = sorted(p for p in Path(repo).iterdir() if p.is_dir()) if Path(repo).is_dir() else []
    if not models:
        return f"model repository {repo} holds no model", "run the import and repository steps"
    for model in models:
        config = model / "config.pbtxt"
        if not config.is_file():
            return (f"model {model.name} in the repository has no config.pbtxt",
                    "run the repository step again (it writes the config Azure ML's Triton loads)")
        if _PYTHON_BACKEND.search(config.read_text(encoding="utf-8", errors="replace")):
            return (f"model {model.name} uses Triton's python backend, which a no-code deployment cannot run "
                    "(Azure ML's Triton image lacks its packages)", _ENSEMBLE_FIX)
        versions = [p for p in model.iterdir() if p.is_dir()]
        odd = sorted(p.name for p in versions if not re.fullmatch(r"[1-9][0-9]*", p.name))
        if odd:
            return (f"version folder {model.name}/{odd[0]} is not a number (Triton ignores it, so it would serve "
                    "nothing from there)", "name version folders 1, 2, … (MODEL_VERSION), then run the "
                    "repository step again")
        if not any((v / f).exists() for v in versions for f in MODEL_FILES):
            return (f"model {model.name} has no version folder with a model file",
                    "run the import and repository steps again")
    return None


def repository_digest(repo: Path) -> str:
    from cvtriton_triton.model_repository import file_sha256

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(repo).rglob("*") if p.is_file()):
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


@dataclass(frozen=True)
class AssetPlan:
    name: str
    version: str
    digest: str
    origin: str                      # one sentence: where the version comes from
    tags: dict[str, str]


def plan_asset(ctx: StepContext, repo: Path, model_name: str, model_version: str) -> AssetPlan:
    from cvtriton_core.adapters.azureml import TOOL_TAG

    digest = repository_digest(repo)
    source, export_dir = ctx.state.get("model_source"), ctx.state.get("export_dir")
    iteration = ctx.state.get("export_iteration") if source and export_dir and \
        Path(source).resolve() == Path(export_dir).resolve() else None
    tags = {TOOL_TAG[0]: TOOL_TAG[1], DIGEST_TAG: digest, "triton-model": model_name,
            "triton-version": model_version}
    name = ASSET_NAME_BAD.sub("-", model_name).strip("-_")[:255] or "model"
    if iteration:
        tags.update({"source.iteration": str(iteration), "source.project": str(ctx.state.get("project_id") or "")})
        version = f"{str(iteration).replace('-', '')[:8]}-{model_version}"
        origin = f"Custom Vision iteration {iteration}, Triton version {model_version}"
    else:
        version = f"sha-{digest[:12]}"
        origin = "the repository's content (the model is not this run's Custom Vision export)"
    return AssetPlan(name, version, digest, origin, {k: v for k, v in tags.items() if v})


async def register(ctx: StepContext, az: Any, repo: Path, plan: AssetPlan) -> tuple[Any, Any]:
    """The asset for ``plan``: reused when it exists with this content, else uploaded and registered.
    Returns (ModelAsset, Upload or None when nothing was uploaded)."""
    ctx.progress(f"Checking model asset {plan.name}:{plan.version}")
    existing = await ctx.blocking(az.model_asset, plan.name, plan.version)
    if existing is not None:
        theirs = existing.tags.get(DIGEST_TAG)
        if theirs != plan.digest:
            what = f"repository sha256 {theirs[:12]}…" if theirs else "content this tool did not register"
            raise UserError(
                f"model asset {plan.name}:{plan.version} already exists in the workspace with other content "
                f"({what}; this repository is {plan.digest[:12]}…), and Azure ML model versions cannot change",
                "set MODEL_VERSION to a new number (the asset version follows it) and run repository and deploy "
                "again, or archive that version in the studio if it is not in use")
        if existing.model_type != "triton_model":
            raise UserError(f"model asset {plan.name}:{plan.version} exists as a {existing.model_type} model",
                            "set MODEL_NAME or MODEL_VERSION to another value")
        ctx.log(f"model asset {existing.reference} already holds this repository ({plan.digest[:12]}…): "
                "nothing to upload")
        ctx.state.set(**{STATE_MODEL_ASSET: existing.reference})
        return existing, None

    def progress(sent: int, total: int, files: int, count: int) -> None:
        ctx.progress(f"Uploading the model repository: {files}/{count} files, {size_text(sent)} of {size_text(total)}",
                     done=sent, total=total)

    ctx.progress(f"Registering model asset {plan.name}:{plan.version} (version from {plan.origin})")
    asset, upload = await in_daemon_thread(az.register_triton_model, plan.name, plan.version, repo, tags=plan.tags,
                                           description="Triton model repository (cvtriton-tui)", on_progress=progress)
    if upload.bytes_sent:
        ctx.log(f"uploaded {upload.files_sent} files ({size_text(upload.bytes_sent)}) to the workspace's "
                f"default datastore; registered {asset.reference}")
    else:
        ctx.log(f"the workspace's datastore already had these files (same content hash): registered "
                f"{asset.reference} without uploading")
    ctx.state.set(**{STATE_MODEL_ASSET: asset.reference})
    return asset, upload


async def in_daemon_thread(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """``fn`` in a daemon thread: a cancelled step stops waiting at once and a process that exits does not wait
    for it (an upload can take minutes; the SDK cannot be interrupted). The SDK registers the asset only after
    every file is uploaded, so an upload cut short registers nothing; one left running in a process that goes
    on (the wizard) finishes and registers the complete asset, which the next deploy reuses."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args, **kwargs), None)
        except BaseException as exc:   # noqa: BLE001 - handed to the awaiting step
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:           # the loop is gone: nobody waits any more
            pass

    threading.Thread(target=work, name="cvtriton-model-upload", daemon=True).start()
    return await future
