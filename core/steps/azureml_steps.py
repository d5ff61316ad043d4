"""Azure ML steps: ``registry-login`` (before ``push``), then ``deploy`` (:mod:`azureml_deploy`),
``endpoint-test`` (:mod:`endpoint_test`), ``traffic``, ``delete``. Long-running operations are followed live
(``StateChanged`` events); deleting names the endpoints this tool created that still exist."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_common import (
    SHARED_REGISTRY_AUTH, SHARED_REGISTRY_LOGIN, STATE_DEPLOYMENT, STATE_REGISTRY, STATE_SCORING_URI, azureml,
    check_deployment_name, check_endpoint_name, check_given_endpoint, check_workspace_settings, complete_traffic,
    deployment_state, describe_traffic, endpoint_name, endpoint_state, follow, parse_traffic, pop_history,
    push_history, remember_created,
)
from cvtriton_core.steps.azureml_deploy import Deploy, DeployResult
from cvtriton_core.steps.azureml_options import DELETE_TARGETS, AzureOptions

__all__ = ["RegistryLogin", "Deploy", "DeployResult", "Traffic", "Delete", "tool_endpoints", "endpoint_overview"]


@dataclass(frozen=True)
class RegistryLoginResult:
    summary: str
    login_server: str
    anonymous: bool


@dataclass(frozen=True)
class TrafficResult:
    summary: str
    endpoint: str
    traffic: dict[str, int]
    previous: dict[str, int]
    skipped: bool = False


@dataclass(frozen=True)
class DeleteResult:
    summary: str
    endpoint: str
    deployment: str | None
    remaining: tuple[str, ...] = field(default=())     # endpoints this tool created that still exist
    skipped: bool = False


def _host(registry: str) -> str:
    text = registry.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    return text.split("/", 1)[0]


class RegistryLogin:
    """Entra token → registry refresh token (what ``az acr login`` does), for the push step:
    ``ctx.run.shared["registry_auth"]`` is ``{"username", "password"}`` (None for a registry that needs none)."""

    name = "registry-login"
    title = "Log in to the container registry"

    def check(self, settings: Settings) -> None:
        check_workspace_settings(settings)
        settings.require_valid("IMAGE_REGISTRY")

    async def run(self, ctx: StepContext) -> RegistryLoginResult:
        from cvtriton_core.adapters.registry_login import login

        self.check(ctx.settings)
        override = ctx.settings.get("IMAGE_REGISTRY")
        az = azureml(ctx)
        if override:
            login_server = _host(override)
            ctx.log(f"IMAGE_REGISTRY={login_server} overrides the workspace's registry")
        else:
            ctx.progress("Reading the workspace's container registry")
            workspace = await ctx.blocking(az.workspace)
            if not workspace.registry_id:
                raise UserError(f"workspace {workspace.name} has no container registry attached",
                                "attach one (Azure portal > the workspace > Container registry), or set IMAGE_REGISTRY")
            login_server = (await ctx.blocking(az.registry, workspace.registry_id)).login_server
        if ctx.settings.get("IMAGE_REGISTRY_USERNAME") and ctx.settings.get("IMAGE_REGISTRY_PASSWORD"):
            ctx.run.shared[SHARED_REGISTRY_AUTH] = None     # push uses the settings' credential as they are
            ctx.state.set(**{STATE_REGISTRY: login_server})
            return RegistryLoginResult(f"{login_server}: IMAGE_REGISTRY_USERNAME/PASSWORD from the settings",
                                       login_server, False)
        ctx.progress(f"Logging in to {login_server}")
        auth = await ctx.blocking(login, login_server, az.arm_token)
        ctx.run.shared[SHARED_REGISTRY_AUTH] = auth.docker_auth()
        ctx.run.shared[SHARED_REGISTRY_LOGIN] = auth
        ctx.state.set(**{STATE_REGISTRY: login_server})
        how = "no credential needed" if auth.password is None else "registry token for the push"
        return RegistryLoginResult(f"{login_server}: {how}", login_server, auth.password is None)


class Traffic:
    name = "traffic"
    title = "Shift endpoint traffic"

    def __init__(self, options: AzureOptions | None = None) -> None:
        self.o = options or AzureOptions()

    def check(self, settings: Settings) -> None:
        """The split's form and sum, and the names, before Azure is asked anything."""
        o = self.o
        check_workspace_settings(settings)
        check_given_endpoint(settings, o.endpoint)
        if o.deployment:
            check_deployment_name(o.deployment)
        if o.rollback:
            if o.traffic and "=" in o.traffic:
                raise UserError("--rollback and a traffic split were both given",
                                "give one: --rollback restores the split before the last change")
            return
        if o.traffic:
            total = sum(parse_traffic(o.traffic).values())
            if total > 100:
                raise UserError(f"traffic adds up to {total}%", "give shares that add up to 100, e.g. "
                                "blue=90,green=10")

    async def run(self, ctx: StepContext) -> TrafficResult:
        o = self.o
        self.check(ctx.settings)
        endpoint = endpoint_name(ctx, o.endpoint)
        wanted = parse_traffic(o.traffic) if (o.traffic and not o.rollback) else None
        az = azureml(ctx)
        info = await ctx.blocking(az.endpoint, endpoint)
        if info is None:
            raise UserError(f"endpoint {endpoint} does not exist", "run the deploy step first")
        deployments = {d.name: d for d in await ctx.blocking(az.deployments, endpoint)}
        current = {name: info.traffic.get(name, 0) for name in deployments}
        if o.rollback:
            split = pop_history(ctx, endpoint)
            if split is None:
                raise UserError(f"no earlier traffic split of endpoint {endpoint} is recorded in this work folder",
                                "give the split to restore, e.g. --traffic blue=100")
            gone = [n for n, v in split.items() if v and n not in deployments]
            if gone:
                raise UserError(f"cannot roll back: deployment {gone[0]} no longer exists",
                                "give the split to use, e.g. --traffic " + ",".join(f"{n}=..." for n in deployments))
            split = {n: split.get(n, 0) for n in deployments}
        else:
            if wanted is None:
                latest = o.deployment or ctx.state.get(STATE_DEPLOYMENT)
                if not latest:
                    raise UserError("no traffic split given", "pass --traffic, e.g. blue=90,green=10")
                wanted = {latest: 100}
            unknown = [n for n in wanted if n not in deployments]
            if unknown:
                raise UserError(f"endpoint {endpoint} has no deployment {unknown[0]}",
                                "choose from " + (", ".join(sorted(deployments)) or "(none: run deploy first)"))
            split = complete_traffic(wanted, current)
        not_ready = [n for n, v in split.items() if v and deployments[n].state != "Succeeded"]
        if not_ready:
            name = not_ready[0]
            raise UserError(f"deployment {name} is {deployments[name].state}, so it cannot take traffic",
                            "redeploy it until it succeeds, or give it 0%")
        if {k: v for k, v in split.items() if v} == {k: v for k, v in current.items() if v}:
            return TrafficResult(f"{endpoint}: already {describe_traffic(current)}", endpoint, current, current,
                                 skipped=True)
        if not o.rollback:
            push_history(ctx, endpoint, current)
        operation = await ctx.blocking(az.begin_traffic, endpoint, split)
        await follow(ctx, resource="endpoint", name=endpoint, read_state=lambda: endpoint_state(az, endpoint),
                     operation=operation, poll_s=o.poll_s)
        after = await ctx.blocking(az.endpoint, endpoint)
        traffic = {n: (after.traffic if after else split).get(n, 0) for n in deployments}
        verb = "rolled back to" if o.rollback else "now"
        return TrafficResult(f"{endpoint}: {verb} {describe_traffic(traffic)} (was {describe_traffic(current)})",
                             endpoint, traffic, current)


class Delete:
    name = "delete"
    title = "Delete from Azure ML"

    def __init__(self, options: AzureOptions | None = None) -> None:
        self.o = options or AzureOptions()

    def check(self, settings: Settings) -> None:
        o = self.o
        if o.delete not in DELETE_TARGETS:
            raise UserError(f"cannot delete {o.delete!r}", "choose " + " or ".join(DELETE_TARGETS))
        check_workspace_settings(settings)
        check_given_endpoint(settings, o.endpoint)
        if o.deployment:
            check_deployment_name(o.deployment)

    async def run(self, ctx: StepContext) -> DeleteResult:
        o = self.o
        self.check(ctx.settings)
        endpoint = endpoint_name(ctx, o.endpoint)
        az = azureml(ctx)
        info = await ctx.blocking(az.endpoint, endpoint)
        if o.delete == "deployment":
            name = o.deployment or ctx.state.get(STATE_DEPLOYMENT)
            if not name:
                raise UserError("no deployment named to delete", "pass --deployment NAME")
            check_deployment_name(name)
            result = await self._deployment(ctx, az, endpoint, name, info)
        else:
            result = await self._endpoint(ctx, az, endpoint, info)
        others = [e.name for e in await ctx.blocking(az.endpoints) if e.created_by_tool and e.name != endpoint]
        for other in others:
            ctx.log(f"endpoint {other}, created by this tool, still exists (and bills while it runs)")
        return DeleteResult(result[0], endpoint, result[1], tuple(others), skipped=result[2])

    async def _deployment(self, ctx: StepContext, az: Any, endpoint: str, name: str, info: Any) -> tuple:
        if info is None or await ctx.blocking(az.deployment, endpoint, name) is None:
            return f"deployment {name} of {endpoint} does not exist (nothing to delete)", name, True
        share = info.traffic.get(name, 0)
        if share:
            others = [d.name for d in await ctx.blocking(az.deployments, endpoint) if d.name != name]
            if not others:
                raise UserError(f"deployment {name} is the only deployment of endpoint {endpoint}",
                                "delete the whole endpoint instead (--delete endpoint)")
            raise UserError(f"deployment {name} still receives {share}% of endpoint {endpoint}'s traffic",
                            f"move it first: run the traffic step with --traffic {others[0]}=100")
        operation = await ctx.blocking(az.begin_delete_deployment, endpoint, name)
        await follow(ctx, resource="deployment", name=name, read_state=lambda: deployment_state(az, endpoint, name),
                     operation=operation, poll_s=self.o.poll_s)
        if ctx.state.get(STATE_DEPLOYMENT) == name:
            ctx.state.set(**{STATE_DEPLOYMENT: None})
        return f"deleted deployment {name} of endpoint {endpoint}", name, False

    async def _endpoint(self, ctx: StepContext, az: Any, endpoint: str, info: Any) -> tuple:
        if info is None:
            remember_created(ctx, endpoint, created=False)
            return f"endpoint {endpoint} does not exist (nothing to delete)", None, True
        if not info.created_by_tool:
            raise UserError(f"endpoint {endpoint} was not created by this tool", "delete it in the Azure ML studio "
                            "if you mean to")
        operation = await ctx.blocking(az.begin_delete_endpoint, endpoint)
        await follow(ctx, resource="endpoint", name=endpoint, read_state=lambda: endpoint_state(az, endpoint),
                     operation=operation, poll_s=self.o.poll_s)
        remember_created(ctx, endpoint, created=False)
        ctx.state.set(**{STATE_DEPLOYMENT: None, STATE_SCORING_URI: None})
        return f"deleted endpoint {endpoint} and its deployments", None, False


def _workspace(settings: Any) -> Any:
    from cvtriton_core.adapters.azureml import AzureML

    return AzureML(settings["AZURE_SUBSCRIPTION_ID"], settings["AZUREML_RESOURCE_GROUP"], settings["AZUREML_WORKSPACE"])


async def tool_endpoints(settings: Any) -> list[Any]:
    """Endpoints this tool created (by their tag) that still exist: the wizard's reminder on start."""
    az = _workspace(settings)
    return [e for e in await asyncio.to_thread(az.endpoints) if e.created_by_tool]


@dataclass(frozen=True)
class EndpointOverview:
    """What Azure ML says an endpoint is now: its state, its traffic split and its deployments (read only)."""

    endpoint: Any                      # adapters.azureml.EndpointInfo, None when it does not exist
    deployments: tuple[Any, ...]       # adapters.azureml.DeploymentInfo

    @property
    def traffic(self) -> dict[str, int]:
        split = dict(self.endpoint.traffic) if self.endpoint is not None else {}
        return {d.name: split.get(d.name, 0) for d in self.deployments}

    def live_besides(self, deployment: str) -> dict[str, int]:
        """Deployments other than ``deployment`` that take traffic now."""
        return {name: share for name, share in self.traffic.items() if name != deployment and share > 0}


async def endpoint_overview(settings: Any, endpoint: str) -> EndpointOverview:
    """Read ``endpoint`` and its deployments (no change): what the wizard shows before a deploy or a delete."""
    check_endpoint_name(endpoint)
    az = _workspace(settings)
    info = await asyncio.to_thread(az.endpoint, endpoint)
    if info is None:
        return EndpointOverview(None, ())
    deployments = await asyncio.to_thread(az.deployments, endpoint)
    return EndpointOverview(info, tuple(sorted(deployments, key=lambda d: d.name)))
