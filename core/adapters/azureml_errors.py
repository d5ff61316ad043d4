"""Azure SDK exceptions → one line naming the cause and the fix.

``azure-core`` raises ``HttpResponseError`` (and subclasses) carrying the HTTP status and Resource Manager's
``{"error": {"code", "message"}}``; a failed long-running operation raises the same type with the operation's
``error``. Some service messages carry the code inside the text (``"ResourceNotReady: User container has
crashed…"``, code None), so the code is also read from there. Credential failures from ``azure-identity``
have no response at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cvtriton_core.errors import UserError

SIGN_IN_FIX = ("sign in so DefaultAzureCredential finds a credential: `az login`, a managed identity, or "
               "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET")
_CODE_IN_TEXT = re.compile(r"^\(?([A-Z][A-Za-z]+)\)?:?\s")


class AzureMLError(UserError):
    """A failed Azure ML call; ``code`` and ``status`` are the service's, ``service_message`` its text."""

    exit_code = 1

    def __init__(self, cause: str, fix: str = "", *, code: str | None = None, status: int | None = None,
                 service_message: str = "", exit_code: int | None = None) -> None:
        super().__init__(cause, fix, exit_code=exit_code)
        self.code, self.status, self.service_message = code, status, service_message


@dataclass(frozen=True)
class Failure:
    status: int | None            # None: no HTTP answer (network, credential)
    code: str | None
    message: str
    retry_after_s: float | None = None


def failure_of(exc: BaseException) -> Failure | None:
    """What an SDK exception says, or None when it is not an Azure call failure (a bug: let it propagate)."""
    from azure.core.exceptions import AzureError, HttpResponseError

    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = getattr(getattr(exc, "error", None), "code", None)
        message = getattr(getattr(exc, "error", None), "message", None) or _first_line(exc.message or str(exc))
        if not code:
            match = _CODE_IN_TEXT.match(message)
            if match:
                code = match.group(1)
        retry = None
        response = getattr(exc, "response", None)
        if response is not None:
            header = response.headers.get("Retry-After") if hasattr(response, "headers") else None
            if header and header.replace(".", "", 1).isdigit():
                retry = float(header)
        return Failure(status, code, _clean(message), retry)
    if isinstance(exc, AzureError):
        return Failure(None, type(exc).__name__, _clean(_first_line(str(exc))))
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _clean(message: str) -> str:
    message = re.sub(r"\s*Please see troubleshooting guide, available here: \S+", "", message).strip()
    return message[:400]


def user_error(exc: BaseException, what: str, *, arm_url: str = "") -> AzureMLError:
    """The one line for a failed call ``what`` ("create endpoint cv-demo")."""
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError

    failure = failure_of(exc)
    if failure is None:
        raise exc
    kw: dict[str, Any] = {"code": failure.code, "status": failure.status, "service_message": failure.message}
    where = f" at {arm_url}" if arm_url else ""
    if isinstance(exc, ClientAuthenticationError) and failure.status is None:
        return AzureMLError(f"no Azure sign-in for {what}: {failure.message}", SIGN_IN_FIX, **kw)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)) or failure.status is None:
        return AzureMLError(f"cannot reach Azure Resource Manager{where} to {what}: {failure.message}",
                            "check the network and proxy; a private CA must be in REQUESTS_CA_BUNDLE", **kw)
    code = failure.code or ""
    if failure.status == 401:
        if code.startswith("Expired"):
            return AzureMLError(f"Azure refused the sign-in token as expired while trying to {what} "
                                f"({failure.message})", "check this machine's clock, then sign in again", **kw)
        return AzureMLError(f"Azure refused the sign-in token to {what} ({code or 'HTTP 401'})",
                            SIGN_IN_FIX + " for the tenant that holds the subscription", **kw)
    if failure.status == 403:
        return AzureMLError(f"no permission to {what} ({code or 'HTTP 403'}: {failure.message})",
                            "ask for the AzureML Data Scientist (or Contributor) role on the workspace", **kw)
    if failure.status == 429:
        wait = f" for {failure.retry_after_s:.0f} s" if failure.retry_after_s else ""
        return AzureMLError(f"Azure Resource Manager is throttling requests (HTTP 429) while trying to {what}",
                            f"wait{wait or ' a minute'} and run the step again", **kw)
    if failure.status and failure.status >= 500:
        return AzureMLError(f"Azure Resource Manager failed to {what} (HTTP {failure.status} {code}: "
                            f"{failure.message})", "run the step again later; if it persists see "
                            "https://status.azure.com", **kw)
    return AzureMLError(f"Azure ML could not {what}: {code + ': ' if code else ''}{failure.message}",
                        "fix the cause the service names, then run the step again", **kw)
