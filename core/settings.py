"""Settings from ``.env`` (python-dotenv): every variable the tool reads, validated, with secrets masked in
every repr and registered for redaction, saved back atomically with a backup. ``.env.example`` at the
repository root lists them all, grouped as here (a test keeps the two in step)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from dotenv import dotenv_values

from cvtriton_core.adapters.customvision_types import (DEFAULT_EXPORT_FLAVOR, ONNX_FLAVORS, TASKS,
                                                       canonical_flavor)
from cvtriton_core.deployment_mode import DEFAULT_DEPLOYMENT_MODE, DEPLOYMENT_MODES, mode_problem
from cvtriton_core.errors import SettingsError
from cvtriton_core.fsutil import atomic_write_bytes, atomic_write_text
from cvtriton_core.redact import mask, register_secret
from cvtriton_triton.image_context import DEFAULT_BASE_IMAGE, check_image_reference, check_registry
from cvtriton_triton.naming import (DEFAULT_MODEL_NAME, DEFAULT_MODEL_VERSION, model_name_problem,
                                    model_version_problem)

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
RESOURCE_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+$",
    re.IGNORECASE,
)
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")   # 1-90, not ending in "."
WORKSPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$")
LOCATION = re.compile(r"^[a-z0-9]{3,30}$")


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    return lambda value: None if regex.match(value) else what


def _choice(options: Iterable[str]) -> Callable[[str], str | None]:
    opts = tuple(options)
    return lambda value: None if value in opts else "one of " + ", ".join(o for o in opts if o)


def _flavor(value: str) -> str | None:
    if canonical_flavor(value):
        return None
    if value.upper() == "ONNX16":   # a name older scripts use; it is not a flavor the service knows
        return "ONNX12 or ONNXFloat16 (ONNX16 is not a Custom Vision export flavor)"
    return "one of " + ", ".join(ONNX_FLAVORS) + " (any letter case)"


BOOLEANS = {"true": True, "false": False}     # how a yes/no setting is written (any letter case)


def _boolean(value: str) -> str | None:
    return None if value.lower() in BOOLEANS else "true or false"


def _key(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9]{16,128}", value) else "16-128 letters or digits, as in the portal's Keys page"


@dataclass(frozen=True)
class Variable:
    name: str
    group: str                         # "Azure ML" | "Custom Vision resource" | "Custom Vision project" | "Triton" | "Container image"
    help: str
    required_for: frozenset[str]       # targets needing it: {"azure"}; empty = optional
    secret: bool = False
    check: Callable[[str], str | None] | None = None  # returns what the value should look like, or None if fine
    default: str = ""


AZURE = frozenset({"azure"})
VARIABLES: tuple[Variable, ...] = (
    Variable("AZURE_SUBSCRIPTION_ID", "Azure ML", "Subscription that holds the workspace", AZURE, check=_pattern(GUID, "a GUID like 00000000-0000-0000-0000-000000000000")),
    Variable("AZUREML_RESOURCE_GROUP", "Azure ML", "Resource group of the Azure ML workspace", AZURE, check=_pattern(RESOURCE_GROUP, "a resource group name (letters, digits, -_.())")),
    Variable("AZUREML_WORKSPACE", "Azure ML", "Azure ML workspace name", AZURE, check=_pattern(WORKSPACE, "3-33 letters, digits, - or _")),
    Variable("AZURE_LOCATION", "Azure ML", "Region, e.g. westeurope", AZURE, check=_pattern(LOCATION, "a region name like westeurope (lower case, no spaces)")),
    Variable("DEPLOYMENT_MODE", "Azure ML", "How the model is deployed: " + " or ".join(DEPLOYMENT_MODES)
             + " (what each costs and cannot do: README, Azure ML)", frozenset(), check=mode_problem,
             default=DEFAULT_DEPLOYMENT_MODE),
    Variable("VISION_TRAINING_ENDPOINT", "Custom Vision resource", "Training endpoint URL", AZURE, check=_pattern(URL, "a URL like https://NAME.cognitiveservices.azure.com/")),
    Variable("VISION_TRAINING_KEY", "Custom Vision resource", "Training key", AZURE, secret=True, check=_key),
    Variable("VISION_PREDICTION_ENDPOINT", "Custom Vision resource", "Prediction endpoint URL", frozenset(), check=_pattern(URL, "a URL like https://NAME-prediction.cognitiveservices.azure.com/")),
    Variable("VISION_PREDICTION_KEY", "Custom Vision resource", "Prediction key", frozenset(), secret=True, check=_key),
    Variable("VISION_PREDICTION_RESOURCE_ID", "Custom Vision resource", "Prediction resource ID (needed to publish)", frozenset(), check=_pattern(RESOURCE_ID, "/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>")),
    Variable("VISION_PROJECT_NAME", "Custom Vision project", "Project to use or create", AZURE, check=lambda v: None if 0 < len(v) <= 255 else "1-255 characters"),
    Variable("VISION_PUBLISH_ITERATION_NAME", "Custom Vision project", "Name the iteration is published under", frozenset(), check=_pattern(re.compile(r"^[A-Za-z0-9_.-]{1,64}$"), "letters, digits, _ . - (no spaces)")),
    Variable("VISION_PROJECT_ID", "Custom Vision project", "Existing project (written back after create)", frozenset(), check=_pattern(GUID, "a project GUID")),
    Variable("VISION_ITERATION_ID", "Custom Vision project", "Existing iteration (written back after training)", frozenset(), check=_pattern(GUID, "an iteration GUID")),
    Variable("VISION_PROJECT_TASK", "Custom Vision project", "Task for a new project (default: follows the image folder)", frozenset(), check=_choice(TASKS)),
    Variable("VISION_PROJECT_DOMAIN", "Custom Vision project", "Domain for a new project, id or name (default: the task's compact domain)", frozenset()),
    Variable("VISION_EXPORT_FLAVOR", "Custom Vision project", "ONNX export flavor (ONNXFloat16 for a float16 model)", frozenset(), check=_flavor, default=DEFAULT_EXPORT_FLAVOR),
    Variable("ENDPOINT_NAME", "Triton", "Azure ML online endpoint name (3-32, unique in the region)", AZURE, check=_pattern(ENDPOINT_NAME, "3-32 letters, digits or -, starting with a letter")),
    Variable("MODEL_NAME", "Triton", "Model name in the Triton repository", frozenset(), check=model_name_problem, default=DEFAULT_MODEL_NAME),
    Variable("MODEL_VERSION", "Triton", "Model version folder", frozenset(), check=model_version_problem, default=DEFAULT_MODEL_VERSION),
    Variable("TRITON_ENSEMBLE", "Triton", "Also serve image bytes in, Custom Vision JSON out (the image ensemble beside the model)", frozenset(), check=_boolean, default="true"),
    Variable("TRITON_BASE_IMAGE", "Container image", "Triton image the built image starts FROM", frozenset(),
             check=check_image_reference, default=DEFAULT_BASE_IMAGE),
    Variable("IMAGE_REGISTRY", "Container image", "Registry the image is pushed to (host[:port][/namespace])",
             frozenset(), check=check_registry),
    Variable("IMAGE_REGISTRY_USERNAME", "Container image", "Registry user (empty: no login)", frozenset()),
    Variable("IMAGE_REGISTRY_PASSWORD", "Container image", "Registry password or token", frozenset(), secret=True),
    Variable("IMAGE_PIP_WHEELS", "Container image", "Folder with a Pillow wheel for the image's Python (offline builds)",
             frozenset()),
)
BY_NAME = {v.name: v for v in VARIABLES}


@dataclass(frozen=True)
class Problem:
    name: str
    message: str       # one line: which variable, what is wrong, what to do

    def __str__(self) -> str:
        return self.message


class Settings(Mapping[str, str]):
    """Values from ``.env`` (plus defaults). Secrets never appear in ``repr``/``str``."""

    def __init__(self, values: Mapping[str, str], path: Path | None = None) -> None:
        self._values = {k: (v or "").strip() for k, v in values.items() if v is not None}
        self.path = path
        for var in VARIABLES:
            if var.secret:
                register_secret(self._values.get(var.name))

    @classmethod
    def load(cls, path: Path | str = ".env", *, required: bool = False) -> "Settings":
        path = Path(path)
        if path.is_dir():
            raise SettingsError(f"settings file {path} is a folder", "pass --env-file with the path of a .env file "
                                "(copy .env.example)")
        if not path.exists():
            if required:
                raise SettingsError(f"settings file {path} not found", "create it (copy .env.example) or pass --env-file")
            return cls({}, path)
        try:
            values = dotenv_values(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read {path}: {exc.__class__.__name__}", "check the file is readable UTF-8 text")
        return cls({k: v or "" for k, v in values.items()}, path)

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._values.get(name, "")
        if value:
            return value
        var = BY_NAME.get(name)
        if var and var.default:
            return var.default
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def raw(self, name: str) -> str:
        """The value as written in the file ('' when unset): no default applied."""
        return self._values.get(name, "")

    def with_values(self, **changes: str) -> "Settings":
        return Settings({**self._values, **changes}, self.path)

    def masked(self) -> dict[str, str]:
        return {k: (mask(v) if BY_NAME.get(k) and BY_NAME[k].secret else v) for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"Settings({self.masked()!r})"

    __str__ = __repr__

    def problems(self, target: str = "azure", names: Iterable[str] | None = None) -> list[Problem]:
        """Every problem for ``target`` ("azure" | "local"), each naming the variable and the fix."""
        wanted = set(names) if names is not None else None
        found: list[Problem] = []
        where = self.path or Path(".env")
        for var in VARIABLES:
            if wanted is not None and var.name not in wanted:
                continue
            value = self._values.get(var.name, "")
            needed = target in var.required_for or (wanted is not None)
            if not value:
                if needed:
                    found.append(Problem(var.name, f"{var.name} is not set — add it to {where} ({var.help})"))
                continue
            if var.check:
                expected = var.check(value)
                if expected:
                    shown = mask(value) if var.secret else repr(value)
                    found.append(Problem(var.name, f"{var.name}={shown} is not valid — expected {expected}"))
        return found

    def require_valid(self, *names: str) -> None:
        """Raise for the first of ``names`` that is set (or defaulted) to an invalid value."""
        for name in names:
            var, value = BY_NAME[name], self.get(name)
            expected = var.check(value) if (value and var.check) else None
            if expected:
                shown = mask(value) if var.secret else repr(value)
                raise SettingsError(f"{name}={shown} is not valid", f"expected {expected}")

    def require(self, *names: str) -> None:
        """Raise one SettingsError naming the first problem among ``names``."""
        issues = self.problems(names=names)
        if issues:
            raise SettingsError(issues[0].message)


def save_env(path: Path | str, changes: Mapping[str, str]) -> Path | None:
    """Write ``changes`` into the .env file, keeping other lines and comments, atomically.

    The previous file is kept as ``<name>.bak``; returns the backup path (None when there was no file).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    written: set[str] = set()
    out: list[str] = []
    for line in lines:
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match and match.group(1) in changes:
            # Every occurrence: python-dotenv keeps the last one, so a duplicate left as is would win.
            out.append(f"{match.group(1)}={_quote(changes[match.group(1)])}")
            written.add(match.group(1))
        else:
            out.append(line)
    out.extend(f"{name}={_quote(value)}" for name, value in changes.items() if name not in written)
    backup = None
    if path.exists():
        backup = path.with_name(path.name + ".bak")
        atomic_write_bytes(backup, path.read_bytes(), mode=0o600)   # it holds the secrets too
    atomic_write_text(path, "\n".join(out) + "\n", mode=0o600)
    return backup


def _quote(value: str) -> str:
    if value == "" or re.fullmatch(r"[A-Za-z0-9_./:@+=,-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
