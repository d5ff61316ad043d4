"""A client for the Custom Vision route (``customvision_front``) as an app calls it: the image's bytes in one
``POST`` (``application/octet-stream``), the ``ImagePrediction`` JSON back. Local container or Azure ML
endpoint alike (HTTPS and the endpoint's ``Authorization`` header; headers are never shown)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from .customvision_front import route_path, served_name
from .errors import ServerError, UserError


class RouteRefused(ServerError):
    """The route (or what stands in front of it, e.g. Azure ML's endpoint) answered non-200: ``http_status``,
    the Custom Vision error ``code`` when the body is one (``None`` otherwise), the service's own
    ``message``, and the response ``headers`` (lower-case names) for a caller that knows what they mean."""

    code: str | None = None
    message: str = ""
    headers: dict[str, str] = {}


def _text(data: bytes) -> str:
    """The words of a non-Custom-Vision error body: its JSON ``message``/``error`` when it has one."""
    try:
        body = json.loads(data)
    except ValueError:
        return " ".join(data[:200].decode("utf-8", "replace").split())
    if isinstance(body, dict):
        inner = body.get("error")
        inner = inner.get("message") if isinstance(inner, dict) else inner
        return str(body.get("message") or inner or body)
    return str(body)


def route_for(ensemble: Any) -> str:
    """The route of an ``ensemble.EnsembleInfo``: its source project, task and published name."""
    return route_path(ensemble.ids.project, ensemble.task, served_name(ensemble.ids.publish_name,
                                                                         ensemble.names.model))


def _host(url: str, ssl: bool) -> tuple[str, bool]:
    url = url.strip().rstrip("/")
    for scheme, secure in (("https://", True), ("http://", False)):
        if url.startswith(scheme):
            if ssl and not secure:
                raise UserError(f"the URL {url} says http:// but ssl was asked", "use an https:// URL or turn ssl off")
            return url[len(scheme):].split("/", 1)[0], secure
    return url.split("/", 1)[0], ssl


def predict_image(url: str, route: str, image: bytes, *, ssl: bool = False, headers: dict[str, str] | None = None,
                  timeout: float = 60.0) -> tuple[dict, float]:
    """POST ``image`` to ``route`` at ``url`` (host:port); (ImagePrediction, milliseconds). A refusal is one
    ``ServerError`` line quoting the route's Custom Vision error code and message."""
    host, secure = _host(url, ssl)
    if secure:
        from .load_test import default_ssl_context     # the load test's trust: system CAs + REQUESTS_CA_BUNDLE

        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, timeout=timeout,
                                                                       context=default_ssl_context())
    else:
        conn = http.client.HTTPConnection(host, timeout=timeout)
    start = time.perf_counter()
    try:
        conn.request("POST", route, body=image, headers={"Content-Type": "application/octet-stream",
                                                         **dict(headers or {})})
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerError(f"the Custom Vision route at {host} did not answer ({type(exc).__name__}: {exc})",
                          "check that the container or endpoint is running and serves the route") from None
    finally:
        conn.close()
    ms = (time.perf_counter() - start) * 1000.0
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    if response.status != 200:
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        refused = RouteRefused(f"the Custom Vision route answered HTTP {response.status}"
                               + (f" {code}: {message}" if code else f": {data[:200].decode('utf-8', 'replace')}"),
                               "check the image, and that the route's project id and published name are the model's")
        refused.http_status, refused.code = response.status, code if isinstance(code, str) else None
        refused.message = str(message) if code and message else _text(data)
        refused.headers = {k.lower(): v for k, v in response.getheaders()}
        raise refused
    if not isinstance(body, dict) or "predictions" not in body:
        raise ServerError(f"the Custom Vision route at {host} answered something other than an ImagePrediction",
                          "check that the URL is the container's Custom Vision port")
    return body, ms
