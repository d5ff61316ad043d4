"""The Custom Vision training API's routes, as the SDK's generated operations build them, and what each answers.

Paths are relative to ``{Endpoint}/customvision/v3.4-preview/training`` (the SDK's base URL); operation names are
the SDK's method names, which is also how the emulator counts requests.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cvtriton_standins.customvision_records import DOMAIN_BY_ID, DOMAINS, ApiError, Iteration, Project
from cvtriton_standins.customvision_store import Store

Route = tuple[str, re.Pattern[str], str]
ROUTES: list[Route] = [(m, re.compile("^" + p + "$"), op) for m, p, op in [
    ("GET", r"/domains", "get_domains"),
    ("GET", r"/domains/(?P<d>[^/]+)", "get_domain"),
    ("GET", r"/projects", "get_projects"),
    ("POST", r"/projects", "create_project"),
    ("GET", r"/projects/(?P<p>[^/]+)", "get_project"),
    ("DELETE", r"/projects/(?P<p>[^/]+)", "delete_project"),
    ("GET", r"/projects/(?P<p>[^/]+)/tags", "get_tags"),
    ("POST", r"/projects/(?P<p>[^/]+)/tags", "create_tag"),
    ("POST", r"/projects/(?P<p>[^/]+)/images/files", "create_images_from_files"),
    ("GET", r"/projects/(?P<p>[^/]+)/images/tagged/count", "get_tagged_image_count"),
    ("GET", r"/projects/(?P<p>[^/]+)/images/untagged/count", "get_untagged_image_count"),
    ("POST", r"/projects/(?P<p>[^/]+)/train", "train_project"),
    ("GET", r"/projects/(?P<p>[^/]+)/iterations", "get_iterations"),
    ("GET", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)", "get_iteration"),
    ("DELETE", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)", "delete_iteration"),
    ("GET", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)/performance", "get_iteration_performance"),
    ("POST", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)/publish", "publish_iteration"),
    ("DELETE", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)/publish", "unpublish_iteration"),
    ("GET", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)/export", "get_exports"),
    ("POST", r"/projects/(?P<p>[^/]+)/iterations/(?P<i>[^/]+)/export", "export_iteration"),
]]


def dispatch(s: Store, base_url: str, op: str, p: dict[str, str], q: dict[str, str], body: bytes) -> tuple[int, Any]:
    """Answer one API operation (``op`` from :data:`ROUTES`): (status, JSON-ready body). Raises ApiError."""
    if op == "get_domains":
        return 200, [d.to_json() for d in DOMAINS]
    if op == "get_domain":
        domain = DOMAIN_BY_ID.get(p["d"].lower())
        if domain is None:
            raise ApiError(404, "NotFoundDomain", f"Domain {p['d']} not found.")
        return 200, domain.to_json()
    if op == "get_projects":
        return 200, [s.project_json(x) for x in s.projects.values()]
    if op == "create_project":
        platforms = [x for x in (q.get("targetExportPlatforms") or "").split(",") if x]
        project = s.create_project(q.get("name"), q.get("description"), q.get("domainId"),
                                   q.get("classificationType"), platforms)
        return 200, s.project_json(project)
    project = s.project(p["p"])
    if op == "get_project":
        return 200, s.project_json(project)
    if op == "delete_project":
        del s.projects[project.id]
        return 204, None
    if op == "get_tags":
        return 200, [s.tag_json(project, t) for t in project.tags.values()]
    if op == "create_tag":
        return 200, s.tag_json(project, s.create_tag(project, q.get("name"), q.get("description"), q.get("type")))
    if op == "create_images_from_files":
        return s.create_images(project, _json_body(body))
    if op in ("get_tagged_image_count", "get_untagged_image_count"):
        return 200, s.tagged_count(project, op == "get_tagged_image_count")
    if op == "train_project":
        return 200, s.iteration_json(project, s.train(project, _flag(q.get("forceTrain"))))
    if op == "get_iterations":
        return 200, [s.iteration_json(project, it) for it in project.iterations]
    return _iteration_op(s, base_url, op, project, s.iteration(project, p["i"]), q)


def _iteration_op(s: Store, base_url: str, op: str, project: Project, it: Iteration,
                  q: dict[str, str]) -> tuple[int, Any]:
    if op == "get_iteration":
        return 200, s.iteration_json(project, it)
    if op == "delete_iteration":
        if it.publish_name:
            raise ApiError(400, "BadRequestIterationIsPublished", "Unpublish the iteration before deleting it.")
        project.iterations.remove(it)
        return 204, None
    if op == "get_iteration_performance":
        return 200, s.performance_json(project, it)
    if op == "publish_iteration":
        s.publish(project, it, q.get("publishName"), q.get("predictionId"), _flag(q.get("overwrite")))
        return 200, True
    if op == "unpublish_iteration":
        if not it.publish_name:
            raise ApiError(400, "BadRequestIterationNotPublished", "The iteration is not published.")
        it.publish_name, it.publish_resource = "", ""
        return 204, None
    if op == "get_exports":
        return 200, [s.export_json(e, base_url) for e in it.exports]
    if op == "export_iteration":
        return 200, s.export_json(s.export(project, it, q.get("platform"), q.get("flavor")), base_url)
    raise ApiError(404, "NotFound", "Resource not found")


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "BadRequestImageBatch", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "BadRequestImageBatch", "The request body must be an object.")
    return data
