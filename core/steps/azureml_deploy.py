"""The ``deploy`` step: a Triton deployment on an Azure ML managed online endpoint — of the pushed image
(``DEPLOYMENT_MODE=container``) or of the model repository as a ``triton_model`` asset served by Azure ML's own
Triton image (``no-code``, :mod:`azureml_nocode`). Everything that can be checked is checked before anything is created (names, instance type in the
region, quota with Azure ML's 20% reserve, registry attached, image present, GPU only with a CUDA image); the
endpoint and deployment operations are followed live (``StateChanged`` events, new container log lines); a
failure names the service's reason, the last log lines and what now exists in Azure. A deployment next to a
live one starts at 0% traffic (safe rollout)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from cvtriton_core.adapters.azureml_errors import AzureMLError
from cvtriton_core.deployment_mode import DEPLOYMENT_MODES, NO_CODE
from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_common import (
    LAST_LINES, LOG_TAIL, SHARED_REGISTRY_LOGIN, STATE_DEPLOYMENT, STATE_ENDPOINT, STATE_PUSHED_IMAGE,
    STATE_SCORING_URI, azureml,
    check_deployment_name, check_given_endpoint, check_workspace_settings, complete_traffic, describe_traffic,
    endpoint_name, endpoint_state, follow, deployment_state, push_history, remember_created,
)
from cvtriton_core.steps.azureml_logs import LogFollower
from cvtriton_core.steps.azureml_options import AUTH_MODES, DEFAULT_DEPLOYMENT, AzureOptions

MAX_INSTANCES = 20
INSTANCE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,63}$")    # Azure VM size names: Standard_DS3_v2


@dataclass(frozen=True)
class DeployResult:
    summary: str
    endpoint: str
    deployment: str
    scoring_uri: str
    state: str
    traffic: dict[str, int]
    image: str
    endpoint_created: bool
    skipped: bool = False
    mode: str = "container"
    model_asset: str = ""             # no-code: azureml:NAME:VERSION
    uploaded_bytes: int = 0           # no-code: what this run uploaded (0: the asset or its files were there)



class Deploy:
    name = "deploy"
    title = "Deploy to Azure ML"

    def __init__(self, options: AzureOptions | None = None, *, run_steps: tuple[str, ...] = (),
                 ensemble: bool | None = None) -> None:
        self.o = options or AzureOptions()
        self.run_steps = tuple(run_steps)     # the run's steps: a no-code deploy refuses image steps among them
        self.ensemble = ensemble              # --[no-]ensemble of the run (None: TRITON_ENSEMBLE)

    def mode(self, settings: Settings) -> str:
        """``--deployment-mode``, else ``DEPLOYMENT_MODE`` (validated), else container."""
        if self.o.deployment_mode is not None:
            if self.o.deployment_mode not in DEPLOYMENT_MODES:
                raise UserError(f"deployment mode {self.o.deployment_mode!r} is not known",
                                "choose " + " or ".join(DEPLOYMENT_MODES))
            return self.o.deployment_mode
        settings.require_valid("DEPLOYMENT_MODE")
        return str(settings.get("DEPLOYMENT_MODE"))

    def check(self, settings: Settings) -> None:
        """Names, auth mode, instance count and type, traffic, the mode against the run's other steps and a
        given image, before anything is created."""
        o = self.o
        check_workspace_settings(settings)
        if self.mode(settings) == NO_CODE:
            from cvtriton_core.steps.azureml_nocode import check_run

            check_run(settings, self.run_steps, self.ensemble, o.image)
        if not (o.endpoint or settings.get("ENDPOINT_NAME")):
            raise UserError("no endpoint name to deploy to", "set ENDPOINT_NAME in the settings, or pass --endpoint "
                            "(3-32 letters, digits or -, unique in the region)")
        check_given_endpoint(settings, o.endpoint)
        check_deployment_name(o.deployment or DEFAULT_DEPLOYMENT)
        if o.auth_mode not in AUTH_MODES:
            raise UserError(f"auth mode {o.auth_mode!r} is not known", "choose " + " or ".join(AUTH_MODES))
        if isinstance(o.instance_count, bool) or not isinstance(o.instance_count, int) \
                or not 1 <= o.instance_count <= MAX_INSTANCES:
            raise UserError(f"instance count {o.instance_count} is out of range", f"choose 1 to {MAX_INSTANCES}")
        if not INSTANCE_TYPE.match(o.instance_type or ""):
            raise UserError(f"instance type {o.instance_type!r} is not an Azure VM size name",
                            "give one such as Standard_DS3_v2 or Standard_NC6s_v3")
        self._percent()
        if o.image:
            from cvtriton_core.adapters.registry_login import ImageRef

            ImageRef.parse(o.image)

    def _percent(self) -> int | None:
        """``--traffic`` for the new deployment: a whole percentage, or None (the default rule)."""
        if self.o.traffic is None:
            return None
        text = str(self.o.traffic).strip().rstrip("%")
        if not text.isdigit() or not 0 <= int(text) <= 100:
            raise UserError(f"traffic {self.o.traffic!r} for the new deployment is not a percentage",
                            "give a whole number from 0 to 100 (a split such as blue=90,green=10 is for the "
                            "traffic step)")
        return int(text)

    async def run(self, ctx: StepContext) -> DeployResult:
        from cvtriton_core.adapters.azureml import READINESS, TRITON_PORT, DeploymentSpec
        from cvtriton_core.adapters.registry_login import ImageRef

        o = self.o
        self.check(ctx.settings)
        mode = self.mode(ctx.settings)
        endpoint = endpoint_name(ctx, o.endpoint)
        deployment = o.deployment or DEFAULT_DEPLOYMENT
        percent = self._percent()
        image = plan = repo = None
        if mode == NO_CODE:
            repo, plan = self._no_code_repository(ctx)
        else:
            image_text = o.image or ctx.state.get(STATE_PUSHED_IMAGE)
            if not image_text:
                raise UserError("no image to deploy", "run the push step first, or pass --deploy-image "
                                "REGISTRY/REPO:TAG (or deploy the repository itself: DEPLOYMENT_MODE=no-code)")
            image = ImageRef.parse(str(image_text))
        az = azureml(ctx)
        checks = await self._prechecks(ctx, az, endpoint, deployment, image)
        size, region, existing_ep, existing_dep = checks
        live = {k: v for k, v in (existing_ep.traffic if existing_ep else {}).items() if k != deployment and v > 0}
        if percent is not None and 0 < percent < 100 and not live:
            raise UserError(f"no other deployment of {endpoint} serves traffic, so {deployment} cannot take "
                            f"{percent}%", "give 100 (or 0), or deploy next to a live deployment")
        asset = upload = None
        if plan is not None:       # registered before the endpoint exists: a refused upload creates nothing
            from cvtriton_core.steps.azureml_nocode import register

            asset, upload = await register(ctx, az, repo, plan)
        created = await self._ensure_endpoint(ctx, az, endpoint, existing_ep, region)
        if asset is not None:
            spec = DeploymentSpec(endpoint=endpoint, name=deployment, image="", model=asset.arm_id,
                                  instance_type=size.name, instance_count=o.instance_count)
        else:
            # The image this run pushed says which port serves (its Custom Vision front proxies /v2 too); an
            # image given by --deploy-image is taken to be a plain Triton image.
            port = int(ctx.state.get("image_scoring_port") or TRITON_PORT) if not o.image else TRITON_PORT
            spec = DeploymentSpec(endpoint=endpoint, name=deployment, image=str(image), instance_type=size.name,
                                  instance_count=o.instance_count, port=port)
        skipped = await self._deploy(ctx, az, spec, existing_dep, region, created, READINESS.window_s)
        traffic = await self._route(ctx, az, endpoint, deployment, percent)
        info = await ctx.blocking(az.endpoint, endpoint)
        scoring_uri = info.scoring_uri if info else ""
        ctx.state.set(**{STATE_ENDPOINT: endpoint, STATE_DEPLOYMENT: deployment, STATE_SCORING_URI: scoring_uri})
        state = "already deployed" if skipped else "Succeeded"
        serves = f" ({asset.reference}, no-code)" if asset is not None else ""
        return DeployResult(summary=f"{endpoint}/{deployment}{serves} {state} ({describe_traffic(traffic)}) at "
                                    f"{scoring_uri}",
                            endpoint=endpoint, deployment=deployment, scoring_uri=scoring_uri, state="Succeeded",
                            traffic=traffic, image=str(image or ""), endpoint_created=created, skipped=skipped,
                            mode=mode, model_asset=asset.reference if asset is not None else "",
                            uploaded_bytes=upload.bytes_sent if upload is not None else 0)

    def _no_code_repository(self, ctx: StepContext) -> tuple[Any, Any]:
        """The repository the repository step wrote, checked for Azure ML's Triton, and its asset's plan."""
        from pathlib import Path

        from cvtriton_core.steps.azureml_nocode import plan_asset, repository_problem

        repo, model = ctx.state.get("repository"), ctx.state.get("model_name")
        if not repo or not model or not Path(repo).is_dir():
            raise UserError("no model repository to deploy", "run the import and repository steps first "
                            "(no-code: …,import,repository,deploy)")
        problem = repository_problem(Path(repo))
        if problem is not None:
            raise UserError(*problem)
        return Path(repo), plan_asset(ctx, Path(repo), str(model), str(ctx.state.get("model_version") or "1"))

    # ------------------------------------------------------------------ pre-checks (nothing is created)
    async def _prechecks(self, ctx: StepContext, az: Any, endpoint: str, deployment: str, image: Any) -> tuple:
        ctx.progress("Checking the workspace")
        workspace = await ctx.blocking(az.workspace)
        region = workspace.location
        wanted_region = ctx.settings.get("AZURE_LOCATION")
        if wanted_region and wanted_region.lower() != region.lower():
            ctx.log(f"AZURE_LOCATION={wanted_region} but workspace {workspace.name} is in {region}: deploying "
                    f"there", level="warning")
        ctx.progress(f"Checking instance type {self.o.instance_type} in {region}")
        sizes = await ctx.blocking(az.vm_sizes, region)
        size = next((s for s in sizes if s.name.lower() == self.o.instance_type.lower()), None)
        if size is None:
            offered = ", ".join(sorted(s.name for s in sizes)[:8])
            raise UserError(f"instance type {self.o.instance_type} is not offered in {region}",
                            f"choose one that is, e.g. {offered}")
        existing_ep = await ctx.blocking(az.endpoint, endpoint)
        if existing_ep is not None and not existing_ep.created_by_tool:
            raise UserError(f"endpoint {endpoint} already exists in workspace {workspace.name} and was not created "
                            "by this tool", "choose another ENDPOINT_NAME (or tag that endpoint "
                            "created-by=cvtriton-tui in the studio to let this tool change it)")
        if existing_ep is not None and existing_ep.state == "Deleting":
            raise UserError(f"endpoint {endpoint} is being deleted", "wait until it is gone, then deploy again")
        existing_dep = await ctx.blocking(az.deployment, endpoint, deployment) if existing_ep else None
        needed = await self._check_quota(ctx, az, region, size, sizes, existing_dep)
        passed = f"checks passed: {size.name} ({size.vcpus} vCPUs{', GPU' if size.gpus else ''}) in {region}, " \
                 f"quota {needed} vCPUs"
        if image is None:
            ctx.log(passed + ", no-code: Azure ML's Triton image")
        else:
            digest = await self._check_image(ctx, az, workspace, image, size)
            ctx.log(passed + f", image {image.repository}@{digest[:19] or image.reference}")
        return size, region, existing_ep, existing_dep

    async def _check_quota(self, ctx: StepContext, az: Any, region: str, size: Any, sizes: list,
                           existing_dep: Any) -> int:
        """Enough vCPUs for ceil(1.2 x instances) x vCPUs; a deployment being updated already holds its own."""
        from cvtriton_core.adapters.azureml import families_usage

        count = self.o.instance_count
        ctx.progress("Checking the quota")
        usage = families_usage(await ctx.blocking(az.usages, region), size.family)
        needed = size.cores_needed(count)
        held = 0
        if existing_dep is not None:
            old = next((s for s in sizes if s.name.lower() == existing_dep.instance_type.lower()), None)
            if old is not None and old.family == size.family:
                held = old.cores_needed(existing_dep.instance_count)
        if usage is None:
            ctx.log(f"no quota figure for the {size.family} family in {region}; Azure ML will check it",
                    level="warning")
        elif needed - held > usage.free:
            raise UserError(
                f"not enough quota for {count} x {size.name} in {region}: the {size.family} family has "
                f"{usage.used}/{usage.limit} vCPUs in use and this deployment needs {needed} ({count} "
                f"instance(s) x {size.vcpus} vCPUs, plus the 20% Azure ML reserves for upgrades)",
                f"request more {size.family} quota in {region} (Azure portal > Quotas > Machine learning), or "
                "choose fewer or smaller instances")
        return needed

    async def _check_image(self, ctx: StepContext, az: Any, workspace: Any, image: Any, size: Any) -> str:
        """The image is in the registry the endpoint pulls from, and CUDA-based when the instance has a GPU."""
        from cvtriton_core.adapters.registry_login import image_facts, login

        ctx.progress("Checking the registry and the image")
        if not workspace.registry_id:
            raise UserError(f"workspace {workspace.name} has no container registry attached, so the endpoint "
                            "cannot pull the image", "attach one (Azure portal > the workspace > Container "
                            "registry), push the image there, then deploy")
        registry = await ctx.blocking(az.registry, workspace.registry_id)
        if image.registry.lower() != registry.login_server.lower():
            raise UserError(f"image {image} is in registry {image.registry}, but the endpoint pulls from workspace "
                            f"{workspace.name}'s registry {registry.login_server}",
                            f"push the image to {registry.login_server} (unset IMAGE_REGISTRY, run registry-login "
                            "and push again)")
        auth = ctx.run.shared.get(SHARED_REGISTRY_LOGIN)
        if auth is None or auth.login_server.lower() != registry.login_server.lower():
            auth = await ctx.blocking(login, registry.login_server, az.arm_token)
            ctx.run.shared[SHARED_REGISTRY_LOGIN] = auth
        facts = await ctx.blocking(image_facts, auth, image)
        if facts is None:
            raise UserError(f"image {image} is not in registry {registry.login_server}",
                            "run the push step (or check --deploy-image)")
        if size.gpus and not facts.gpu_capable:
            raise UserError(f"{size.name} is a GPU instance but image {image} has no CUDA runtime (no CUDA_VERSION "
                            "in its environment)", "build it FROM a GPU Triton image (nvcr.io/nvidia/tritonserver:"
                            "<version>-py3), or choose a CPU instance type such as Standard_DS3_v2")
        return facts.digest

    # ------------------------------------------------------------------ endpoint
    async def _ensure_endpoint(self, ctx: StepContext, az: Any, endpoint: str, existing: Any, region: str) -> bool:
        if existing is not None:
            if existing.auth_mode != self.o.auth_mode:
                ctx.log(f"endpoint {endpoint} uses {existing.auth_mode} auth; keeping it (asked: {self.o.auth_mode})",
                        level="warning")
            if existing.state != "Succeeded":
                await follow(ctx, resource="endpoint", name=endpoint, read_state=lambda: endpoint_state(az, endpoint),
                             poll_s=self.o.poll_s)
            return False
        ctx.progress(f"Creating endpoint {endpoint}")
        try:
            operation = await ctx.blocking(az.begin_endpoint, endpoint, self.o.auth_mode,
                                           description="Triton Inference Server (cvtriton-tui)")
            remember_created(ctx, endpoint, created=True)
            await follow(ctx, resource="endpoint", name=endpoint, read_state=lambda: endpoint_state(az, endpoint),
                         operation=operation, poll_s=self.o.poll_s)
        except AzureMLError as exc:
            text = (exc.service_message or exc.cause).lower()
            if "not available" in text or "unique within" in text or "already an endpoint" in text:
                remember_created(ctx, endpoint, created=False)
                raise UserError(f"endpoint name {endpoint} is already taken in {region} (endpoint names are unique "
                                "per region across all of Azure)", "choose another ENDPOINT_NAME") from None
            raise
        return True

    # ------------------------------------------------------------------ deployment
    async def _deploy(self, ctx: StepContext, az: Any, spec: Any, existing: Any, region: str, created: bool,
                      window_s: int) -> bool:
        from cvtriton_core.steps.azureml_failures import DeployContext

        follower = LogFollower()
        dctx = DeployContext(spec.endpoint, spec.name, spec.instance_type, spec.instance_count, spec.shown, region,
                             window_s, created, no_code=bool(spec.model))
        read = lambda: deployment_state(az, spec.endpoint, spec.name)  # noqa: E731
        logs = lambda: az.logs(spec.endpoint, spec.name, LOG_TAIL)  # noqa: E731
        storage = (lambda: az.logs(spec.endpoint, spec.name, LOG_TAIL, storage_initializer=True)) if spec.model \
            else None
        if existing is not None and existing.state in ("Creating", "Updating"):
            ctx.log(f"deployment {spec.name} is already {existing.state} (an earlier run started it): following it")
            final = await follow(ctx, resource="deployment", name=spec.name, read_state=read, poll_s=self.o.poll_s,
                                 logs=logs, follower=follower, storage_logs=storage)
            if final == "Succeeded":
                return False
            error = AzureMLError(f"deployment {spec.name} ended {final}", code=None)
            raise await self._failure(ctx, az, error, dctx, follower)
        same = (existing is not None and existing.state == "Succeeded" and existing.serves.lower() == spec.serves.lower()
                and existing.instance_type.lower() == spec.instance_type.lower()
                and existing.instance_count == spec.instance_count)
        if same:
            ctx.log(f"deployment {spec.name} already runs {spec.shown} on {spec.instance_count} x "
                    f"{spec.instance_type}: nothing to change")
            return True
        ctx.progress(f"Deploying {spec.shown} as {spec.name}")
        operation = await ctx.blocking(az.begin_deployment, spec)
        try:
            await follow(ctx, resource="deployment", name=spec.name, read_state=read, operation=operation,
                         poll_s=self.o.poll_s, logs=logs, follower=follower, storage_logs=storage)
        except AzureMLError as exc:
            raise await self._failure(ctx, az, exc, dctx, follower) from None
        except asyncio.CancelledError:
            ctx.log(f"deployment {spec.name} keeps provisioning in Azure ML: run deploy again to follow it, or the "
                    "delete step to remove it", level="warning")
            raise
        return False

    async def _failure(self, ctx: StepContext, az: Any, error: AzureMLError, dctx: Any,
                       follower: LogFollower) -> AzureMLError:
        from cvtriton_core.steps.azureml_failures import explain

        try:
            text = await ctx.blocking(az.logs, dctx.endpoint, dctx.deployment, LOG_TAIL)
        except UserError:
            text = ""
        for line in follower.feed(text):
            ctx.log(line, source="inference-server")
        lines = (text.splitlines() or follower.last)[-LAST_LINES:]
        storage: list[str] = []
        if not lines:
            try:
                storage = (await ctx.blocking(az.logs, dctx.endpoint, dctx.deployment, LOG_TAIL,
                                              storage_initializer=True)).splitlines()[-LAST_LINES:]
            except UserError:
                storage = []
            for line in storage:
                ctx.log(line, source="storage-initializer", level="error")
        state = await ctx.blocking(deployment_state, az, dctx.endpoint, dctx.deployment)
        previous = ctx.run.shared.get(f"state:deployment:{dctx.deployment}")
        if state and state != previous:
            ctx.state_changed("deployment", dctx.deployment, state, previous, detail=error.code or "")
            ctx.run.shared[f"state:deployment:{dctx.deployment}"] = state
        return explain(error, dctx, lines, storage)

    # ------------------------------------------------------------------ traffic
    async def _route(self, ctx: StepContext, az: Any, endpoint: str, deployment: str,
                     percent: int | None) -> dict[str, int]:
        info = await ctx.blocking(az.endpoint, endpoint)
        current = dict(info.traffic) if info else {}
        live_others = {k: v for k, v in current.items() if k != deployment and v > 0}
        target = percent if percent is not None else (current.get(deployment, 0) if live_others else 100)
        if target == current.get(deployment, 0):
            if live_others and target == 0:
                ctx.log(f"safe rollout: {deployment} gets 0% next to {describe_traffic(live_others)}; test it with "
                        "endpoint-test (it reaches the deployment through the azureml-model-deployment header), "
                        "then shift traffic with the traffic step")
            return current
        if live_others:
            split = complete_traffic({deployment: target}, current)
        else:
            split = {deployment: target} if target else {}
        push_history(ctx, endpoint, current)
        operation = await ctx.blocking(az.begin_traffic, endpoint, split)
        await follow(ctx, resource="endpoint", name=endpoint, read_state=lambda: endpoint_state(az, endpoint),
                     operation=operation, poll_s=self.o.poll_s)
        ctx.log(f"traffic of {endpoint}: {describe_traffic(split)}")
        return split
