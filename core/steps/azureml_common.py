"""What the Azure ML steps share: the adapter for the run's workspace, following a long-running operation with
live state events and container logs, traffic arithmetic, the pre-run checks, and the run-state keys the steps
hand on (defined in :mod:`azureml_state`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import ENDPOINT_NAME, Settings
from cvtriton_core.steps.azureml_logs import LogFollower
from cvtriton_core.steps.azureml_state import (  # noqa: F401  (the steps import the keys from here too)
    SHARED_REGISTRY_AUTH, SHARED_REGISTRY_LOGIN, STATE_CREATED, STATE_DEPLOYMENT, STATE_ENDPOINT,
    STATE_PUSHED_IMAGE, STATE_REGISTRY, STATE_SCORING_URI, STATE_TRAFFIC_HISTORY,
)

WORKSPACE_SETTINGS = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE")
TERMINAL = ("Succeeded", "Failed", "Canceled")
LOG_TAIL = 200                         # lines asked of getLogs per poll
LAST_LINES = 25                        # log lines quoted when a deployment fails


def azureml(ctx: StepContext) -> Any:
    """The run's :class:`~cvtriton_core.adapters.azureml.AzureML` (one per run), its SDK warnings in this
    step's log."""
    from cvtriton_core.adapters.azureml import AzureML

    ctx.settings.require(*WORKSPACE_SETTINGS)
    ctx.settings.require_valid(*WORKSPACE_SETTINGS)
    adapter = ctx.run.shared.get("azureml")
    if adapter is None:
        adapter = AzureML(ctx.settings["AZURE_SUBSCRIPTION_ID"], ctx.settings["AZUREML_RESOURCE_GROUP"],
                          ctx.settings["AZUREML_WORKSPACE"])
        ctx.run.shared["azureml"] = adapter
    adapter.set_log(lambda line: ctx.log(line, source="azureml", level="warning"))
    return adapter


def endpoint_name(ctx: StepContext, given: str | None) -> str:
    name = given or ctx.settings.get("ENDPOINT_NAME") or ctx.state.get(STATE_ENDPOINT)
    if not name:
        raise UserError("no endpoint name", "set ENDPOINT_NAME in the settings (3-32 letters, digits or -)")
    check_endpoint_name(name)
    return name


def check_workspace_settings(settings: Settings) -> None:
    """The settings every Azure ML step needs: set and well-formed (a step's ``check``)."""
    settings.require(*WORKSPACE_SETTINGS)


def check_given_endpoint(settings: Settings, given: str | None) -> None:
    """The endpoint name a step will use, when it is known before the run (``--endpoint`` or ENDPOINT_NAME;
    without either the run state's, checked when the step runs)."""
    name = given or settings.get("ENDPOINT_NAME")
    if name:
        check_endpoint_name(name)


def check_endpoint_name(name: str) -> None:
    if not ENDPOINT_NAME.match(name):
        raise UserError(f"endpoint name {name!r} is not valid",
                        "use 3-32 letters, digits or -, starting with a letter and ending with a letter or digit")


def check_deployment_name(name: str) -> None:
    if not ENDPOINT_NAME.match(name):
        raise UserError(f"deployment name {name!r} is not valid",
                        "use 3-32 letters, digits or -, starting with a letter and ending with a letter or digit")


async def follow(ctx: StepContext, *, resource: str, name: str, read_state: Callable[[], str | None],
                 operation: Any = None, poll_s: float, logs: Callable[[], str] | None = None,
                 follower: LogFollower | None = None, timeout_s: float | None = None,
                 storage_logs: Callable[[], str] | None = None) -> Any:
    """Poll ``read_state`` (None: the resource is gone) every ``poll_s`` until ``operation`` is done (or, with
    no operation, until a terminal state), emitting each change as a ``StateChanged`` event and each new
    container log line as a ``LogLine`` (``storage_logs``: the storage initializer's too, which downloads a
    no-code deployment's model). Returns ``operation.result()`` (which raises the service's error)."""
    previous: str | None = ctx.run.shared.get(f"state:{resource}:{name}")
    storage_follower = LogFollower() if storage_logs is not None else None
    started = time.monotonic()
    warned = False
    while True:
        finished = operation.done() if operation is not None else False
        known = True
        try:
            state = await ctx.blocking(read_state)
        except UserError as exc:      # a read failing (throttled, network) is not the operation failing
            if not warned:
                ctx.log(f"could not read the {resource}'s state ({exc.cause}); still waiting", level="warning")
                warned = True
            known, state = False, None
        sources = [("inference-server", logs, follower), ("storage-initializer", storage_logs, storage_follower)]
        for source, read_logs, lines in sources:
            if read_logs is None or lines is None:
                continue
            try:
                for line in lines.feed(await ctx.blocking(read_logs)):
                    ctx.log(line, source=source)
            except UserError:         # no logs before the container starts: the service may refuse them
                pass
        shown = (state or "Deleted") if known else (previous or "unknown")
        if known and shown != previous:
            ctx.state_changed(resource, name, shown, previous)
            previous = shown
            ctx.run.shared[f"state:{resource}:{name}"] = shown
        elapsed = time.monotonic() - started
        ctx.progress(f"{resource} {name}: {shown} ({elapsed:.0f} s)")
        if operation is None and known and (state in TERMINAL or state is None):
            return state
        if finished:
            return await ctx.blocking(operation.result)
        if timeout_s is not None and elapsed > timeout_s:
            raise UserError(f"{resource} {name} is still {shown} after {elapsed:.0f} s",
                            "run the step again later to keep following it")
        await asyncio.sleep(poll_s)


# ----------------------------------------------------------------------------- traffic arithmetic
def parse_traffic(spec: str) -> dict[str, int]:
    """``"blue=90,green=10"`` -> ``{"blue": 90, "green": 10}``; one line naming the fix when malformed."""
    split: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip().rstrip("%")
        if not sep or not name or not value.isdigit() or not 0 <= int(value) <= 100:
            raise UserError(f"traffic {part!r} is not DEPLOYMENT=PERCENT", "write e.g. blue=90,green=10")
        check_deployment_name(name)
        split[name] = int(value)
    if not split:
        raise UserError("no traffic split given", "write e.g. blue=90,green=10")
    return split


def complete_traffic(wanted: dict[str, int], current: dict[str, int]) -> dict[str, int]:
    """The full split: ``wanted`` as given; when it adds up to less than 100 the rest goes to what served
    before, in proportion (one line naming the fix when that is ambiguous or impossible)."""
    total = sum(wanted.values())
    if total > 100:
        raise UserError(f"traffic adds up to {total}%", "give shares that add up to 100, e.g. blue=90,green=10")
    rest = 100 - total
    others = {k: v for k, v in current.items() if k not in wanted and v > 0}
    split = dict(wanted)
    if rest:
        if not others:
            raise UserError(f"traffic adds up to {total}% and no other deployment serves the rest",
                            "give shares that add up to 100")
        served = sum(others.values())
        shares = {k: rest * v // served for k, v in others.items()}
        leftover = rest - sum(shares.values())
        for k in sorted(others, key=lambda k: -others[k])[:leftover]:
            shares[k] += 1
        split.update(shares)
    for k in current:
        split.setdefault(k, 0)
    return {k: v for k, v in split.items()}


def describe_traffic(split: dict[str, int]) -> str:
    shown = {k: v for k, v in split.items() if v} or split
    return ", ".join(f"{k} {v}%" for k, v in sorted(shown.items(), key=lambda kv: -kv[1])) or "no traffic"


def push_history(ctx: StepContext, endpoint: str, previous: dict[str, int]) -> None:
    history = dict(ctx.state.get(STATE_TRAFFIC_HISTORY) or {})
    history[endpoint] = [*history.get(endpoint, []), dict(previous)][-20:]
    ctx.state.set(**{STATE_TRAFFIC_HISTORY: history})


def pop_history(ctx: StepContext, endpoint: str) -> dict[str, int] | None:
    history = dict(ctx.state.get(STATE_TRAFFIC_HISTORY) or {})
    stack = list(history.get(endpoint, []))
    if not stack:
        return None
    previous = stack.pop()
    history[endpoint] = stack
    ctx.state.set(**{STATE_TRAFFIC_HISTORY: history})
    return {k: int(v) for k, v in previous.items()}


def remember_created(ctx: StepContext, endpoint: str, *, created: bool) -> None:
    names = [n for n in (ctx.state.get(STATE_CREATED) or []) if n != endpoint]
    if created:
        names.append(endpoint)
    ctx.state.set(**{STATE_CREATED: names})


def endpoint_state(az: Any, endpoint: str) -> str | None:
    info = az.endpoint(endpoint)
    return info.state if info else None


def deployment_state(az: Any, endpoint: str, deployment: str) -> str | None:
    info = az.deployment(endpoint, deployment)
    return info.state if info else None
