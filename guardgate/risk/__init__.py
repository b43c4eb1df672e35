"""Pipeline step 3: distillation risk, per caller and across callers.

`guardgate.risk.engine` runs it; `features` reads a request, `signals`
scores a caller's state. The signals' names, default weights and ramps are
policy data (`guardgate.policy.catalogue`): risk reads the compiled policy,
and the policy imports nothing from here.
"""
