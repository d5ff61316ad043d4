"""Custom Vision training service, as async operations the core and the wizard call.

The only module that imports ``azure-cognitiveservices-vision-customvision`` (lazily: importing this module
costs nothing). Every SDK call is a blocking msrest request, so it runs in a worker thread. The SDK's own
retries are switched off and :mod:`cvtriton_core.adapters.retry` retries instead, visibly, with the rule that a
POST whose outcome is unknown is first reconciled (look for what it would have created) and never simply
repeated. Errors come out as one-line :class:`UserError`s naming the setting or action that fixes them.
"""

from __future__ import annotations

from typing import Any, Callable

from cvtriton_core.adapters.customvision_ops import TrainingOps
from cvtriton_core.adapters.customvision_types import (COMPACT_DOMAIN, TASKS, DomainInfo, ExportInfo, ImageOutcome,
                                                       IterationInfo, IterationNotFound, ProjectInfo, ServiceRefusal,
                                                       UploadItem, domain_info, domain_type, iteration_info,
                                                       project_info)
from cvtriton_core.adapters.retry import CallFailed, CallFailure, RetryPolicy, call_with_retry
from cvtriton_core.errors import StepFailed, UserError

__all__ = ["CustomVisionService", "DomainInfo", "ProjectInfo", "IterationInfo", "ExportInfo", "UploadItem",
           "ImageOutcome", "ServiceRefusal", "IterationNotFound", "COMPACT_DOMAIN", "TASKS"]

_CHECK_POLICY = RetryPolicy(budget_s=30.0, max_transport_failures=1)


class CustomVisionService(TrainingOps):
    """One training resource. ``notify`` receives one line per retry wait (the steps pass their logger).

    Training, publishing and export live in :class:`~cvtriton_core.adapters.customvision_ops.TrainingOps`.
    """

    poll_initial_s = 0.25
    poll_max_s = 10.0

    def __init__(self, endpoint: str, training_key: str, *, notify: Callable[[str], None] | None = None,
                 policy: RetryPolicy | None = None, timeout_s: float = 120.0) -> None:
        self.endpoint = endpoint.strip().rstrip("/")
        self._key = training_key.strip()
        self.notify = notify or (lambda line: None)
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self._sdk: Any = None
        self._domains: dict[str, DomainInfo] | None = None

    def __repr__(self) -> str:       # never the key
        return f"CustomVisionService({self.endpoint!r})"

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> "CustomVisionService":
        settings.require("VISION_TRAINING_ENDPOINT", "VISION_TRAINING_KEY")
        return cls(settings.get("VISION_TRAINING_ENDPOINT"), settings.get("VISION_TRAINING_KEY"), **kwargs)

    # plumbing -----------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._sdk is None:
            from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
            from msrest.authentication import ApiKeyCredentials

            credentials = ApiKeyCredentials(in_headers={"Training-key": self._key})
            client = CustomVisionTrainingClient(self.endpoint, credentials)
            retry = client.config.retry_policy          # off: every retry happens in retry.py, visibly
            retry.retries = 0
            retry.policy.status_forcelist = frozenset()
            retry.policy.raise_on_status = False
            client.config.connection.timeout = self.timeout_s
            self._sdk = client
        return self._sdk

    @staticmethod
    def _models() -> Any:
        from azure.cognitiveservices.vision.customvision.training import models

        return models

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
            self._sdk = None

    async def __aenter__(self) -> "CustomVisionService":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _call(self, what: str, fn: Callable[[], Any], *, safe: bool = True,
                    reconcile: Callable[[], Any] | None = None, policy: RetryPolicy | None = None) -> Any:
        try:
            return await call_with_retry(fn, what=what, classify=classify, policy=policy or self.policy,
                                         notify=self.notify, safe_to_repeat=safe, reconcile=reconcile)
        except CallFailed as err:
            raise self._user_error(err) from None

    def _user_error(self, err: CallFailed) -> UserError:
        f, what = err.failure, err.what
        if f.status in (401, 403):
            return UserError(f"Custom Vision at {self.endpoint} refused the training key ({f.message})",
                             "set VISION_TRAINING_KEY to Key 1 or Key 2 of the training resource that "
                             "VISION_TRAINING_ENDPOINT names (portal: Keys and Endpoint)")
        if f.status == 404 and f.code is None:
            return UserError(f"{self.endpoint} does not serve the Custom Vision training API (HTTP 404 when asked to "
                             f"{what})", "set VISION_TRAINING_ENDPOINT to the training resource's endpoint, e.g. "
                             "https://NAME.cognitiveservices.azure.com/")
        if f.transport:
            return StepFailed(f"cannot reach Custom Vision at {self.endpoint} to {what} ({f.message})",
                              "check VISION_TRAINING_ENDPOINT and the network, then run again")
        if f.status == 429:
            return StepFailed(f"Custom Vision kept rate-limiting the request to {what} for {err.waited_s:.0f} s",
                              "wait a few minutes and run again; the run resumes where it stopped")
        if f.retryable:
            return StepFailed(f"Custom Vision failed to {what} ({f.describe()})",
                              "run again; the run resumes where it stopped and does not repeat finished work")
        return ServiceRefusal(what, f.status or 0, f.code, f.message)

    # connection and listings ------------------------------------------------------------------------
    async def check_connection(self) -> str:
        """One line describing the resource; UserError for a wrong key, endpoint or an unreachable host."""
        domains = await self._call("list domains", lambda: self._client().get_domains(), policy=_CHECK_POLICY)
        projects = await self._call("list projects", lambda: self._client().get_projects(), policy=_CHECK_POLICY)
        self._domains = {d.id: d for d in map(domain_info, domains)}
        api = self._client().config.base_url.split("/customvision/", 1)[-1].split("/")[0]
        return f"Custom Vision {api} at {self.endpoint}: {len(projects)} project(s), {len(domains)} domains"

    async def list_domains(self) -> list[DomainInfo]:
        if self._domains is None:
            domains = await self._call("list domains", lambda: self._client().get_domains())
            self._domains = {d.id: d for d in map(domain_info, domains)}
        return list(self._domains.values())

    async def find_domain(self, key: str, kind: str | None = None) -> DomainInfo | None:
        """A domain by id, or by name ("General (compact)") among domains of ``kind`` ("Classification" or
        "ObjectDetection") when given: several domain types share names."""
        domains = [d for d in await self.list_domains() if kind is None or d.type == kind]
        key = key.strip().lower()
        return next((d for d in domains if d.id == key), None) or next((d for d in domains if d.name.lower() == key),
                                                                       None)

    async def list_projects(self) -> list[ProjectInfo]:
        domains = {d.id: d for d in await self.list_domains()}
        projects = await self._call("list projects", lambda: self._client().get_projects())
        return sorted((project_info(p, domains) for p in projects), key=lambda p: p.name.lower())

    async def get_project(self, project_id: str) -> ProjectInfo:
        domains = {d.id: d for d in await self.list_domains()}
        try:
            project = await self._call(f"get project {project_id}", lambda: self._client().get_project(project_id))
        except ServiceRefusal as refusal:
            if refusal.status in (400, 404):
                raise UserError(f"project {project_id} does not exist in the Custom Vision resource at {self.endpoint}",
                                "fix VISION_PROJECT_ID, or remove it to find or create the project by "
                                "VISION_PROJECT_NAME") from None
            raise
        return project_info(project, domains)

    async def find_projects(self, name: str) -> list[ProjectInfo]:
        return [p for p in await self.list_projects() if p.name == name]

    async def list_iterations(self, project_id: str, *, with_performance: bool = True) -> list[IterationInfo]:
        """Newest first; precision/recall/mAP from the performance call for completed iterations."""
        raw = await self._call("list iterations", lambda: self._client().get_iterations(project_id))
        out = []
        for it in sorted(raw, key=lambda i: i.created or 0, reverse=True):
            perf = await self._performance(project_id, str(it.id)) if with_performance and it.status == "Completed" \
                else None
            out.append(iteration_info(it, perf))
        return out

    async def get_iteration(self, project_id: str, iteration_id: str, *,
                            with_performance: bool = False) -> IterationInfo:
        try:
            it = await self._call(f"get iteration {iteration_id}",
                                  lambda: self._client().get_iteration(project_id, iteration_id))
        except ServiceRefusal as refusal:
            if refusal.status in (400, 404):
                raise IterationNotFound(f"iteration {iteration_id} does not exist in project {project_id}",
                                "fix or remove VISION_ITERATION_ID (the train step sets it)") from None
            raise
        perf = await self._performance(project_id, iteration_id) if with_performance and it.status == "Completed" \
            else None
        return iteration_info(it, perf)

    async def _performance(self, project_id: str, iteration_id: str) -> Any:
        try:
            return await self._call("read iteration performance",
                                    lambda: self._client().get_iteration_performance(project_id, iteration_id))
        except ServiceRefusal:
            return None          # scores are informative; an iteration without them is still usable

    # projects and tags ----------------------------------------------------------------------------------
    async def create_project(self, name: str, task: str, domain_id: str | None = None,
                             description: str = "Created by cvtriton-tui") -> ProjectInfo:
        """Create a project (compact domain of ``task`` by default). A lost response is reconciled by name."""
        if task not in TASKS:
            raise UserError(f"unknown project task {task!r}", "set VISION_PROJECT_TASK to one of " + ", ".join(TASKS))
        domain_id = domain_id or COMPACT_DOMAIN[domain_type(task)]
        domains = {d.id: d for d in await self.list_domains()}
        classification = task.split("-", 1)[1] if domain_type(task) == "Classification" else None

        async def reconcile() -> ProjectInfo | None:
            found = await self.find_projects(name)
            return found[0] if len(found) == 1 else None

        def create() -> ProjectInfo:
            return project_info(self._client().create_project(name, description=description, domain_id=domain_id,
                                                              classification_type=classification), domains)

        try:
            return await self._call(f"create project {name!r}", create, safe=False, reconcile=reconcile)
        except ServiceRefusal as refusal:
            if refusal.code == "BadRequestProjectNameNotUnique":
                raise UserError(f"a Custom Vision project named {name!r} already exists",
                                "set VISION_PROJECT_ID to use it, or choose another VISION_PROJECT_NAME") from None
            raise

    async def get_tags(self, project_id: str) -> dict[str, str]:
        tags = await self._call("list tags", lambda: self._client().get_tags(project_id))
        return {t.name: str(t.id) for t in tags}

    async def ensure_tags(self, project_id: str, names: list[str]) -> dict[str, str]:
        """name -> tag id for every name, creating the missing ones (a lost response is reconciled)."""
        existing = await self.get_tags(project_id)
        by_lower = {k.lower(): v for k, v in existing.items()}
        out: dict[str, str] = {}
        for name in names:
            if name.lower() in by_lower:
                out[name] = by_lower[name.lower()]
                continue

            async def reconcile(name: str = name) -> str | None:
                return {k.lower(): v for k, v in (await self.get_tags(project_id)).items()}.get(name.lower())

            out[name] = await self._call(f"create tag {name!r}",
                                         lambda name=name: str(self._client().create_tag(project_id, name).id),
                                         safe=False, reconcile=reconcile)
        return out

    async def upload_batch(self, project_id: str, items: list[UploadItem]) -> list[ImageOutcome]:
        """One CreateImagesFromFiles request (at most 64 images). Repeating it is safe: the service answers
        ``OKDuplicate`` for images it already has, so a lost response is simply retried."""
        if not 0 < len(items) <= 64:
            raise ValueError("a batch holds 1 to 64 images")
        m = self._models()
        batch = m.ImageFileCreateBatch(images=[
            m.ImageFileCreateEntry(name=i.name, contents=i.data, tag_ids=list(i.tag_ids) or None,
                                   regions=[m.Region(tag_id=r[0], left=r[1], top=r[2], width=r[3], height=r[4])
                                            for r in i.regions] or None) for i in items])
        summary = await self._call("upload images", lambda: self._client().create_images_from_files(project_id, batch))
        by_name = {r.source_url: r for r in summary.images or []}
        return [ImageOutcome(i.name, by_name[i.name].status if i.name in by_name else "Missing",
                             str(by_name[i.name].image.id) if i.name in by_name and by_name[i.name].image else None)
                for i in items]



def classify(exc: BaseException) -> CallFailure | None:
    """Map an SDK or download exception to a CallFailure; None for anything that is not about the call."""
    import urllib.error

    from msrest.exceptions import ClientRequestError, HttpOperationError

    if isinstance(exc, HttpOperationError) and getattr(exc, "response", None) is not None:
        response = exc.response
        error = exc.error if not isinstance(exc.error, BaseException) else None
        code = getattr(error, "code", None)
        message = getattr(error, "message", None) or exc.message
        return CallFailure(response.status_code, str(code) if code else None, " ".join(str(message).split())[:300],
                           _retry_after(response.headers.get("Retry-After")))
    if isinstance(exc, urllib.error.HTTPError):
        return CallFailure(exc.code, None, f"HTTP {exc.code} {exc.reason}",
                           _retry_after(exc.headers.get("Retry-After")))
    if isinstance(exc, (ClientRequestError, urllib.error.URLError, TimeoutError, ConnectionError)):
        chain = _chain_text(exc)
        never_sent = any(k in chain for k in ("NewConnectionError", "NameResolutionError", "ConnectTimeout",
                                              "Connection refused", "Name or service not known"))
        reason = "connection refused" if "refused" in chain else ("host not found" if "NameResolution" in chain
                                                                 else "connection failed or timed out")
        return CallFailure(None, None, reason, sent=not never_sent)
    return None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None                      # an HTTP date: fall back to our own backoff


def _chain_text(exc: BaseException) -> str:
    seen, parts, todo = set(), [], [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        parts.append(f"{type(item).__name__}: {item}")
        linked = (getattr(item, "inner_exception", None), getattr(item, "reason", None), item.__cause__,
                  item.__context__, *getattr(item, "args", ()))
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return " | ".join(parts)

