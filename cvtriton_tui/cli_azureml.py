"""The ``run`` flags of the Azure ML steps (deploy, endpoint-test, traffic, delete) and the
:class:`~cvtriton_core.steps.azureml_options.AzureOptions` they make."""

from __future__ import annotations

import argparse

from cvtriton_core.deployment_mode import DEPLOYMENT_MODES
from cvtriton_core.steps.azureml_options import (
    AUTH_MODES, DEFAULT_DEPLOYMENT, DEFAULT_INSTANCE_TYPE, DELETE_TARGETS, AzureOptions,
)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 up")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.05 to 600")
    return value


def add_arguments(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("Azure ML (deploy, endpoint-test, traffic, delete)")
    group.add_argument("--endpoint", help="online endpoint name (default: ENDPOINT_NAME)")
    group.add_argument("--deployment", help=f"deployment name (deploy default: {DEFAULT_DEPLOYMENT}; the others: "
                       "the deployment this work folder deployed last)")
    group.add_argument("--deploy-image", help="image to deploy, REGISTRY/REPO:TAG (default: what push pushed)")
    group.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE, help=f"default {DEFAULT_INSTANCE_TYPE}")
    group.add_argument("--instance-count", type=_count, default=1, help="default 1")
    group.add_argument("--auth-mode", choices=AUTH_MODES, default="key", help="endpoint auth (default key)")
    group.add_argument("--traffic", help="deploy: percent for the new deployment (default 100 for the first, "
                       "0 next to a live one); traffic: the split, e.g. blue=90,green=10")
    group.add_argument("--rollback", action="store_true", help="traffic: restore the split before the last change")
    group.add_argument("--delete", choices=DELETE_TARGETS, default="endpoint",
                       help="delete: the whole endpoint (default) or one deployment (--deployment)")
    group.add_argument("--by-traffic", action="store_true",
                       help="endpoint-test: send no deployment header (the endpoint's traffic split decides)")
    group.add_argument("--deployment-mode", choices=tuple(DEPLOYMENT_MODES),
                       help="deploy: " + "; ".join(f"{m.name}: {m.costs}" for m in DEPLOYMENT_MODES.values())
                       + " (default: DEPLOYMENT_MODE, else container)")
    group.add_argument("--poll-seconds", type=_seconds, default=5.0,
                       help="how often provisioning state and container logs are read (default 5)")


def options_from(args: argparse.Namespace) -> AzureOptions:
    return AzureOptions(endpoint=args.endpoint, deployment=args.deployment, image=args.deploy_image,
                        instance_type=args.instance_type, instance_count=args.instance_count,
                        auth_mode=args.auth_mode, traffic=args.traffic, rollback=args.rollback, delete=args.delete,
                        by_traffic=args.by_traffic, poll_s=args.poll_seconds,
                        deployment_mode=args.deployment_mode)
