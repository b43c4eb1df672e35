"""Pipeline step 3: distillation risk, per caller and across callers.

`guardgate.risk.engine` runs it; `catalogue` names the signals (the policy
reads it, so this package imports nothing at load); `features` reads a
request, `signals` scores a caller's state.
"""
