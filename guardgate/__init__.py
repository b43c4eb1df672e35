"""guardgate: a gateway that protects model APIs from distillation."""

from __future__ import annotations

from importlib import metadata

from guardgate.apis.base import ModelCall
from guardgate.errors import (
    BadRequest,
    BodyTooLarge,
    Denied,
    GuardGateError,
    PolicyError,
    PolicyProblem,
    RateLimited,
    RequestError,
    StorageError,
    StorageUnavailable,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from guardgate.gateway import GuardGate
from guardgate.policy import load_policy
from guardgate.policy.model import Policy

try:
    __version__ = metadata.version("guardgate")
except metadata.PackageNotFoundError:  # a source tree never installed
    __version__ = "0+unknown"

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "Denied",
    "GuardGate",
    "GuardGateError",
    "ModelCall",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "RateLimited",
    "RequestError",
    "StorageError",
    "StorageUnavailable",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "__version__",
    "load_policy",
]
