"""The Resource Manager emulator's Azure ML online routes: environments, online endpoints (keys, tokens) and
their deployments (real ones, run by :mod:`cvtriton_standins.arm_deployments`; logs). Wire format and the
service's rules as :mod:`cvtriton_standins.arm_emulator` describes; this mixin holds only the handlers."""

from __future__ import annotations

import re
import secrets
import time

from cvtriton_standins.arm_records import (
    DEPLOYMENT_NAME, ENDPOINT_NAME, PROVIDER, TROUBLESHOOTING, AmlToken, ArmError, Deployment, Endpoint, Environment,
    VmSize, cores_needed, system_data,
)
from cvtriton_standins.scoring_front import ScoringFront

MODEL_ID = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)


class OnlineRoutes:
    """Mixed into :class:`~cvtriton_standins.arm_emulator.ResourceManagerEmulator` (its state and helpers)."""

    # routes: environments -------------------------------------------------------------------------
    def put_environment(self, params, body, query):
        arm_id = f"{self._ws_id()}/environments/{params['name']}/versions/{params['version']}"
        props = dict(body.get("properties") or {})
        if not props.get("image") and not props.get("build"):
            raise ArmError(400, "UserError", "An environment needs an image or a build context.")
        props.update({"environmentType": "UserCreated", "provisioningState": "Succeeded"})
        stored = {"id": arm_id, "name": params["version"], "type": f"{PROVIDER}/workspaces/environments/versions",
                  "systemData": system_data(), "properties": props}
        with self._lock:
            existed = arm_id.lower() in self.environments
            self.environments[arm_id.lower()] = Environment(arm_id, stored)
        return (200 if existed else 201), stored, {}

    def get_environment(self, params, body, query):
        arm_id = f"{self._ws_id()}/environments/{params['name']}/versions/{params['version']}"
        env = self.environments.get(arm_id.lower())
        if env is None:
            raise ArmError(404, "UserError", f"Could not find asset with ID: {arm_id}")
        return 200, env.body, {}

    # routes: endpoints --------------------------------------------------------------------------
    def _endpoint(self, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ArmError(404, "ResourceNotFound",
                           f"Resource {PROVIDER}/workspaces/{self.workspace}/onlineEndpoints/{name} not found.")
        return endpoint

    def get_endpoint(self, params, body, query):
        with self._lock:
            return 200, self._endpoint(params["e"]).to_json(self.issuer.tenant_id), {}

    def list_endpoints(self, params, body, query):
        with self._lock:
            return 200, {"value": [e.to_json(self.issuer.tenant_id) for e in self.endpoints.values()]}, {}

    def put_endpoint(self, params, body, query):
        name = params["e"]
        props = body.get("properties") or {}
        if not ENDPOINT_NAME.fullmatch(name):
            raise ArmError(400, "BadArgument", f"Endpoint name '{name}' is invalid: it must be 3 to 32 characters, "
                           "start with a letter and contain only letters, digits and hyphens, ending with a letter "
                           "or digit.")
        traffic = {k: int(v) for k, v in (props.get("traffic") or {}).items()}
        with self._lock:
            if name.lower() in self.taken_names:
                raise ArmError(400, "UserError", f"The specified endpoint name '{name}' is not available. Endpoint "
                               "names must be unique within the region. Please choose a different name and try "
                               "again.")
            endpoint = self.endpoints.get(name)
            if endpoint is not None and endpoint.provisioning_state == "Deleting":
                raise ArmError(409, "Conflict", f"Endpoint {name} is being deleted; retry when it is gone.")
            self._check_traffic(name, traffic)
            op, headers = self._operation()
            if endpoint is None:
                auth = str(props.get("authMode") or "Key")
                if auth.lower() not in ("key", "amltoken", "aadtoken"):
                    raise ArmError(400, "BadArgument", f"Auth mode '{auth}' is not supported.")
                endpoint = Endpoint(name=name, arm_id=f"{self._ws_id()}/onlineEndpoints/{name}",
                                    location=str(body.get("location") or self.location), auth_mode=auth,
                                    tags=dict(body.get("tags") or {}), description=str(props.get("description") or ""),
                                    traffic=traffic, properties=dict(props.get("properties") or {}))
                front = ScoringFront(self, name)
                self.fronts[name] = front
                endpoint.scoring_uri = front.scoring_uri
                self.endpoints[name] = endpoint
                status = 201
            else:
                endpoint.tags = dict(body.get("tags") or endpoint.tags)
                endpoint.description = str(props.get("description") or endpoint.description)
                endpoint.traffic = traffic
                endpoint.provisioning_state = "Updating"
                status = 200
            snapshot = endpoint.to_json(self.issuer.tenant_id)

        def settle() -> None:
            with self._lock:
                if self.endpoints.get(name) is endpoint and endpoint.provisioning_state in ("Creating", "Updating"):
                    endpoint.provisioning_state = "Succeeded"
            op.finish()

        self._later(self.provision_s, settle)
        return status, snapshot, headers

    def _check_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        for deployment, weight in traffic.items():
            if (endpoint, deployment) not in self.deployments:
                raise ArmError(400, "BadArgument", f"Traffic rule refers to deployment '{deployment}', which does "
                               f"not exist in endpoint '{endpoint}'.")
            if not 0 <= weight <= 100:
                raise ArmError(400, "BadArgument", f"Traffic for deployment '{deployment}' must be 0 to 100.")
        total = sum(traffic.values())
        if traffic and total != 100:
            raise ArmError(400, "BadArgument", f"Traffic values must add up to 100 (they add up to {total}).")

    def delete_endpoint(self, params, body, query):
        name = params["e"]
        with self._lock:
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                return 204, None, {}
            endpoint.provisioning_state = "Deleting"
            op, headers = self._operation()

        def gone() -> None:
            self._drop_endpoint(name)
            op.finish()

        self._later(self.provision_s, gone)
        return 202, None, headers

    def _drop_endpoint(self, name: str) -> None:
        with self._lock:
            keys = [k for k in self.deployments if k[0] == name]
        for key in keys:
            self._drop_deployment(*key)
        with self._lock:
            self.endpoints.pop(name, None)
            self.tokens.pop(name, None)
            front = self.fronts.pop(name, None)
        if front is not None:
            front.stop()

    def list_keys(self, params, body, query):
        with self._lock:
            endpoint = self._endpoint(params["e"])
            if endpoint.auth_mode.lower() != "key":
                raise ArmError(400, "BadArgument", f"Endpoint {endpoint.name} does not use keys "
                               f"(auth mode {endpoint.auth_mode}).")
            self.keys_handed_out.update((endpoint.primary_key, endpoint.secondary_key))
            return 200, {"primaryKey": endpoint.primary_key, "secondaryKey": endpoint.secondary_key}, {}

    def get_token(self, params, body, query):
        with self._lock:
            endpoint = self._endpoint(params["e"])
            if endpoint.auth_mode.lower() != "amltoken":
                raise ArmError(400, "BadArgument", f"Endpoint {endpoint.name} does not use AML tokens "
                               f"(auth mode {endpoint.auth_mode}).")
            now = time.time()
            lifetime = self.aml_token_lifetime_s
            if self.stale_aml_tokens > 0:          # born expired: what a token cached too long looks like
                self.stale_aml_tokens -= 1
                lifetime = -60.0
            token = AmlToken(secrets.token_urlsafe(48), now + lifetime)
            self.tokens.setdefault(endpoint.name, []).append(token)
            self.keys_handed_out.add(token.value)
            return 200, {"accessToken": token.value, "tokenType": "Bearer", "expiryTimeUtc": int(token.expires),
                         "refreshAfterTimeUtc": int(now + self.aml_token_lifetime_s / 2)}, {}

    # routes: deployments ------------------------------------------------------------------------
    def _deployment(self, endpoint: str, name: str) -> Deployment:
        deployment = self.deployments.get((endpoint, name))
        if deployment is None:
            raise ArmError(404, "ResourceNotFound", f"Resource {PROVIDER}/workspaces/{self.workspace}/"
                           f"onlineEndpoints/{endpoint}/deployments/{name} not found.")
        return deployment

    def get_deployment(self, params, body, query):
        with self._lock:
            self._endpoint(params["e"])
            return 200, self._deployment(params["e"], params["d"]).to_json(), {}

    def list_deployments(self, params, body, query):
        with self._lock:
            self._endpoint(params["e"])
            return 200, {"value": [d.to_json() for (e, _), d in self.deployments.items() if e == params["e"]]}, {}

    def put_deployment(self, params, body, query):
        endpoint_name, name = params["e"], params["d"]
        props = body.get("properties") or {}
        if not DEPLOYMENT_NAME.fullmatch(name):
            raise ArmError(400, "BadArgument", f"Deployment name '{name}' is invalid: 3 to 32 letters, digits and "
                           "hyphens, starting and ending with a letter or digit.")
        with self._lock:
            endpoint = self._endpoint(endpoint_name)
            if endpoint.provisioning_state == "Deleting":
                raise ArmError(409, "Conflict", f"Endpoint {endpoint_name} is being deleted.")
            size = self.sizes.get(str(props.get("instanceType") or "").lower())
            if size is None:
                raise ArmError(400, "BadArgument", f"The instance type '{props.get('instanceType')}' is not "
                               f"supported in region {self.location}.")
            initializer = None
            if not props.get("environmentId") and props.get("model"):
                environment, initializer = self._no_code(props, endpoint_name, name)
            else:
                environment = self.environments.get(str(props.get("environmentId") or "").lower())
            if environment is None:
                raise ArmError(400, "BadArgument", f"Environment '{props.get('environmentId')}' was not found.")
            deployment = self.deployments.get((endpoint_name, name))
            status = 200 if deployment is not None else 201
            if deployment is None:
                deployment = Deployment(name=name, endpoint=endpoint_name,
                                        arm_id=f"{endpoint.arm_id}/deployments/{name}",
                                        location=str(body.get("location") or self.location), body=body)
                self.deployments[(endpoint_name, name)] = deployment
            else:
                deployment.body = body
                deployment.system["lastModifiedAt"] = system_data()["lastModifiedAt"]
            deployment.generation += 1
            generation = deployment.generation
            deployment.provisioning_state = "Creating" if status == 201 else "Updating"
            op, headers = self._operation()
            failure = self._failures.pop(0) if self._failures else None
            quota_error = self._hold_quota(deployment, size)
            snapshot = deployment.to_json()

        def is_current() -> bool:
            with self._lock:
                return self.deployments.get((endpoint_name, name)) is deployment and deployment.generation == generation

        def done(error: ArmError | None) -> None:
            with self._lock:
                if is_current():
                    deployment.provisioning_state = "Failed" if error else "Succeeded"
            op.finish(error)

        if quota_error is not None or failure is not None:
            self._later(self.provision_s, lambda: done(quota_error or failure))
        else:
            self._runner.provision(deployment, environment, on_done=done, is_current=is_current,
                                   initializer=initializer)
        return status, snapshot, headers

    def _no_code(self, props: dict, endpoint: str, name: str) -> tuple:
        """A model without an environment: only a ``triton_model`` asset runs in Azure ML's own Triton image."""
        from cvtriton_standins.arm_nocode import StorageInitializer, triton_environment

        match = MODEL_ID.search(str(props["model"]))
        model = self.models.get((match.group("name"), match.group("version"))) if match else None
        if model is None:
            raise ArmError(400, "BadArgument", f"Model '{props['model']}' was not found in workspace "
                           f"{self.workspace}.")
        if str(model.properties.get("modelType") or "").lower() != "triton_model":
            raise ArmError(400, "BadArgument", "An environment is required for a deployment of a model of type "
                           f"'{model.properties.get('modelType')}': only mlflow_model and triton_model deploy "
                           "without one.")
        if not self.triton_image:
            raise ArmError(500, "InternalServerError", "the emulator has no Triton image (set triton_image)")
        folder = self.folder / "model-downloads" / f"{endpoint}-{name}"
        lost = (model.name, model.version) in self.lost_models
        return triton_environment(self.triton_image), StorageInitializer(self.storage, model, folder, lost=lost)

    def _hold_quota(self, deployment: Deployment, size: VmSize) -> ArmError | None:
        """Move the deployment's cores to its (new) family; an error when the quota cannot take them."""
        needed = cores_needed(size, deployment.instance_count)
        if deployment.family in self.quota:
            self.quota[deployment.family][0] -= deployment.cores_held
        deployment.cores_held, deployment.family = 0, ""
        used, limit = self.quota.setdefault(size.family, [0, 0])
        if used + needed > limit:
            return ArmError(400, "OutOfQuota", f"Not enough quota available for {size.name} in SubscriptionId "
                            f"{self.subscription}. Current usage/limit: {used}/{limit}. Additional needed: {needed} "
                            + TROUBLESHOOTING.format(anchor="outofquota"))
        self.quota[size.family][0] += needed
        deployment.cores_held, deployment.family = needed, size.family
        return None

    def delete_deployment(self, params, body, query):
        endpoint_name, name = params["e"], params["d"]
        with self._lock:
            endpoint = self._endpoint(endpoint_name)
            if (endpoint_name, name) not in self.deployments:
                return 204, None, {}
            if endpoint.traffic.get(name, 0) > 0:
                raise ArmError(400, "BadArgument", f"Deployment '{name}' receives {endpoint.traffic[name]}% of "
                               f"the traffic of endpoint '{endpoint_name}'. Set its traffic to 0 before deleting it.")
            self.deployments[(endpoint_name, name)].provisioning_state = "Deleting"
            op, headers = self._operation()

        def gone() -> None:
            self._drop_deployment(endpoint_name, name)
            op.finish()

        self._later(self.provision_s, gone)
        return 202, None, headers

    def _drop_deployment(self, endpoint: str, name: str) -> None:
        with self._lock:
            deployment = self.deployments.pop((endpoint, name), None)
            if deployment is not None and deployment.family in self.quota:
                self.quota[deployment.family][0] -= deployment.cores_held
        if self._runner is not None:
            self._runner.remove(endpoint, name)

    def get_logs(self, params, body, query):
        with self._lock:
            self._endpoint(params["e"])
            self._deployment(params["e"], params["d"])
        tail = int(body.get("tail") or 100)
        container = str(body.get("containerType") or "InferenceServer")
        # a custom container with the model inside has nothing to fetch: its storage initializer log is empty
        text = self._runner.logs(params["e"], params["d"], tail,
                                 storage_initializer=container.lower() == "storageinitializer") if self._runner else ""
        lines = text.splitlines()[-tail:]
        return 200, {"content": "\n".join(lines) + ("\n" if lines else "")}, {}
