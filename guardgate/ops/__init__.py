"""The operator wing under ``/_guardgate/``: health, metrics, the operator
API, the dashboard and the browser challenge's redemption. It is handed what
it reads by the gateway and never imports the gateway back."""

from guardgate.ops.app import OPS_PREFIX, OpsApp

__all__ = ["OPS_PREFIX", "OpsApp"]
