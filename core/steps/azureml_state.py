"""What the Azure ML steps keep for later steps and later runs: run-state keys (values only, never secrets)
and the live objects they hand on in ``RunContext.shared``. Import-light: the step registry lists the results
among them (``registry.RESULTS``) so stale ones are dropped."""

from __future__ import annotations

# results: true only for what the step that wrote them last did
STATE_ENDPOINT = "azureml_endpoint"              # deploy: the endpoint it deployed to
STATE_DEPLOYMENT = "azureml_deployment"          # deploy: the deployment it made (endpoint-test, traffic, delete)
STATE_SCORING_URI = "azureml_scoring_uri"        # deploy: the endpoint's scoring URI
STATE_MODEL_ASSET = "azureml_model_asset"        # deploy (no-code): the triton_model asset, azureml:NAME:VERSION
STATE_REGISTRY = "registry"                      # registry-login: the login server push goes to
SHARED_REGISTRY_AUTH = "registry_auth"           # registry-login -> push: {"username", "password"} or None
SHARED_REGISTRY_LOGIN = "registry_login"         # registry-login -> deploy's image check: the RegistryAuth

# records, kept across runs (not results: what exists in Azure does not depend on the model)
STATE_CREATED = "azureml_endpoints_created"      # endpoints this tool created and has not deleted
STATE_TRAFFIC_HISTORY = "azureml_traffic_history"  # {endpoint: [previous splits, newest last]}

# read from the image steps
STATE_PUSHED_IMAGE = "image_remote"              # the push step: REGISTRY/REPO@sha256:DIGEST
