"""The public surface is exactly what guardgate/__init__.py declares."""

from __future__ import annotations

import guardgate


def test_public_names_are_pinned() -> None:
    assert guardgate.__all__ == sorted(guardgate.__all__)
    assert set(guardgate.__all__) == {
        "BadRequest", "BodyTooLarge", "Denied", "GuardGate", "GuardGateError", "ModelCall", "Policy",
        "PolicyError", "PolicyProblem", "RateLimited", "RequestError", "StorageError",
        "StorageUnavailable", "UpstreamError",
        "UpstreamTimeout", "UpstreamUnavailable", "__version__", "load_policy",
    }
    for name in guardgate.__all__:
        assert hasattr(guardgate, name)
