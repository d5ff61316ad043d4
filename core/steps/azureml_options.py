"""What the Azure ML steps take besides the settings: one frozen value on ``RunOptions.azure`` (import-light,
so the step registry stays free to import). The wizard's Deploy pane and the headless flags fill the same
fields."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DEPLOYMENT = "blue"
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"   # CPU; GPU types need GPU quota (0 by default) and a CUDA image
AUTH_MODES = ("key", "aml_token")
DELETE_TARGETS = ("endpoint", "deployment")


@dataclass(frozen=True)
class AzureOptions:
    endpoint: str | None = None         # default: ENDPOINT_NAME from the settings
    deployment: str | None = None       # deploy: default blue; endpoint-test/traffic/delete: this run's deployment
    image: str | None = None            # deploy: default the image the push step pushed
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    auth_mode: str = "key"
    traffic: str | None = None          # deploy: percent for the new deployment; traffic: "blue=90,green=10"
    rollback: bool = False              # traffic: put the split back as it was before the last change
    delete: str = "endpoint"            # delete: "endpoint" (with its deployments) | "deployment"
    by_traffic: bool = False            # endpoint-test: no deployment header, the endpoint's split decides
    poll_s: float = 5.0                 # how often provisioning state and container logs are read
    deployment_mode: str | None = None  # deploy: "container" | "no-code"; default the DEPLOYMENT_MODE setting
