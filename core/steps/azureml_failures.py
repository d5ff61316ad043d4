"""Why a deployment failed, in words a user can act on: the service's reason, what to do for the causes
users hit most (quota, image pull, crash loop, readiness probe timeout), the last container log lines, and
what now exists in Azure."""

from __future__ import annotations

from dataclasses import dataclass

from cvtriton_core.adapters.azureml_errors import AzureMLError


@dataclass(frozen=True)
class DeployContext:
    endpoint: str
    deployment: str
    instance_type: str
    instance_count: int
    image: str
    region: str
    readiness_window_s: int
    endpoint_created: bool          # by this run
    no_code: bool = False           # image is then the triton_model asset Azure ML's Triton serves


def explain(error: AzureMLError, ctx: DeployContext, log_lines: list[str], storage_lines: list[str]) -> AzureMLError:
    code = (error.code or "").strip()
    text = error.service_message or error.cause
    low = text.lower()
    if ctx.no_code and ("storage initializer" in low or "download model" in low or "model download" in low):
        cause = f"Azure ML could not download the model asset {ctx.image} into the deployment: {text}"
        fix = ("read the storage-initializer log below: when the asset's files are gone from the workspace's "
               "storage, set a new MODEL_VERSION and run repository and deploy again (a new version is uploaded); "
               "when access is refused, check the datastore's credential and the storage account's firewall")
    elif code == "OutOfQuota" or "not enough quota" in low:
        cause = (f"Azure ML has not enough quota for {ctx.instance_count} x {ctx.instance_type} in {ctx.region}: "
                 f"{text}")
        fix = ("request more vCPU quota for that VM family (Azure portal > Quotas > Machine learning), or choose "
               "a smaller instance type or fewer instances; deleting unused deployments frees quota")
    elif "download user container image" in low or "imagepull" in low.replace(" ", "") or code == "ImagePullFailure":
        cause = f"the endpoint could not pull the image {ctx.image}: {text}"
        fix = ("push the image to the workspace's attached registry (steps registry-login, push); the endpoint "
               "pulls with its own identity, which needs AcrPull on that registry")
    elif code == "ResourceNotReady" and "readiness probe" in low:
        cause = (f"Triton did not become ready within the readiness probe's window (~{ctx.readiness_window_s} s): "
                 f"{text}")
        fix = ("read the container log below: a model that fails to load keeps /v2/health/ready failing; if "
               "the model only loads slowly, choose a bigger instance type")
    elif code == "ResourceNotReady":
        cause = f"the container keeps crashing: {text}"
        fix = ("read the container log below (a model that fails to load stops tritonserver; so does a wrong "
               "command or a missing library); run-local reproduces it on this machine")
    elif code == "ResourceNotFound":
        cause = f"Azure ML could not find something the deployment needs: {text}"
        fix = "check that the image still exists in the registry and the registry is attached to the workspace"
    elif code == "OperationCanceled":
        cause = f"another operation on endpoint {ctx.endpoint} cancelled this deployment: {text}"
        fix = "wait a minute, then run deploy again"
    elif (error.status or 0) >= 500 or code in ("InternalServerError", "ServiceError"):
        cause = f"the deployment operation failed inside Azure ML: {text}"
        fix = "run deploy again; if it fails the same way, open an Azure support ticket"
    else:
        cause = f"the deployment failed: {code + ': ' if code else ''}{text}"
        fix = "fix the cause the service names, then run deploy again"
    if not log_lines and not storage_lines and code == "ResourceNotReady":
        fix += "; the container wrote no log at all, so it may never have started: check the image's CMD"
    left = f"deployment {ctx.deployment} now exists in state Failed on endpoint {ctx.endpoint}"
    if ctx.endpoint_created:
        left += " (created by this run)"
    fix += f". {left[0].upper()}{left[1:]}: run deploy again after the fix (it updates it in place), or the " \
           "delete step to remove it"
    details = ""
    if log_lines:
        details += "Last container log lines:\n" + "\n".join(log_lines) + "\n"
    if storage_lines:
        details += "Storage initializer log:\n" + "\n".join(storage_lines) + "\n"
    failure = AzureMLError(cause, fix, code=error.code, status=error.status, service_message=error.service_message)
    failure.details = details or "The container log was empty."
    return failure
