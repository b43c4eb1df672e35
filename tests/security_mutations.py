"""Take each security protection away in turn, run the tests that guard it,
and check that they fail; the source is restored after each.

    python3 tests/security_mutations.py      # from the project's root

Exits 1 if any protection can be removed with its tests still passing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _in(path: str, test: str) -> str:
    return f"{path}::{test}"


MUTATIONS = [
  ("token signatures (challenge and clearance)", "guardgate/challenge/tokens.py",
   "if key is None or not hmac.compare_digest(self._mac(key, kind, payload), given):",
   "if key is None:",
   ["tests/test_challenge.py::test_every_failed_solution_gets_the_same_answer_and_its_own_reason",
    "tests/test_security.py::test_a_tampered_or_forged_clearance_is_refused"]),
  ("single-use redemption in Redis (replay across replicas)", "guardgate/store/lua/clearance_redeem.lua",
   "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then",
   "if not redis.call('SET', KEYS[1], '1', 'EX', ARGV[1]) then",
   ["tests/test_challenge.py::test_replicas_redeem_a_challenge_once_and_share_a_budget"]),
  ("single-use redemption in memory (replay)", "guardgate/store/clearances.py",
   "        if key in self._redeemed:\n            return None\n",
   "",
   ["tests/test_challenge.py::test_every_failed_solution_gets_the_same_answer_and_its_own_reason"]),
  ("clearance binding (principal, prefix, agent)", "guardgate/challenge/gate.py",
   "        if clearance.binding != binding:\n            raise TokenError(\"wrong_binding\")\n",
   "",
   ["tests/test_security.py::test_a_clearance_does_not_travel_to_another_caller"]),
  ("forwarding headers believed only from trusted proxies", "guardgate/identity.py",
   "        if not trusted_peer or not forwarded_for:\n            return peer\n",
   "        if not forwarded_for:\n            return peer\n",
   ["tests/test_identity.py::test_spoofed_forwarded_for_from_untrusted_peer_is_ignored"]),
  ("request ids echoed only when plain", "guardgate/replies.py",
   "return given if given and _REQUEST_ID.fullmatch(given) else new_request_id()",
   "return given if given else new_request_id()",
   ["tests/test_security.py::test_reflected_values_cannot_inject_headers_or_markup"]),
  ("dashboard escapes what callers name themselves", "guardgate/ops/dashboard.py",
   "rows.append(f\"<tr><td><code>{html.escape(principal)}</code></td>\"",
   "rows.append(f\"<tr><td><code>{principal}</code></td>\"",
   ["tests/test_security.py::test_reflected_values_cannot_inject_headers_or_markup"]),
  ("operator API needs the token", "guardgate/ops/admin.py",
   "        return hmac.compare_digest(given, self._token)",
   "        return True",
   ["tests/test_operator.py::test_every_operator_endpoint_needs_the_token"]),
  ("constant-time comparison of the operator token", "guardgate/ops/admin.py",
   "        return hmac.compare_digest(given, self._token)",
   "        return given == self._token",
   ["tests/test_security.py::test_secrets_are_compared_in_constant_time"]),
  ("storage password redacted where shown", "guardgate/ops/dashboard.py",
   "html.escape(redacted(policy.storage))",
   "html.escape(policy.storage)",
   ["tests/test_security.py::test_no_secret_or_raw_key_leaves_in_logs_metrics_or_answers"]),
  ("raw API keys hashed into principals", "guardgate/identity.py",
   '                        return "key:" + digest[:16], digest\n',
   '                        return "key:" + token.decode(), digest\n',
   ["tests/test_security.py::test_no_secret_or_raw_key_leaves_in_logs_metrics_or_answers"]),
  # Enforcement: what a hostile caller would use to get more than the policy gives.
  ("one caller, one credential", "guardgate/identity.py",
   "        if mixed and (mixed == ALWAYS",
   "        if False and (mixed == ALWAYS",
   ["tests/test_hostile_requests.py::test_a_second_different_key_is_refused_in_the_api_shape"]),
  ("a key repeated in a model call refused", "guardgate/apis/base.py",
   "    if unique and (repeated := _repeated_key(body, value)) is not None:",
   "    if False and (repeated := _repeated_key(body, value)) is not None:",
   ["tests/test_hostile_requests.py::test_a_key_repeated_in_a_model_call_is_refused"]),
  ("method-override headers dropped", "guardgate/upstream.py",
   "_NOT_FOR_APP = CHALLENGE_HEADERS | METHOD_OVERRIDES\n",
   "_NOT_FOR_APP = CHALLENGE_HEADERS\n",
   ["tests/test_hostile_requests.py::test_method_override_headers_never_reach_the_upstream"]),
  ("every answer a request may be billed for reserved", "guardgate/admit.py",
   "        output = (call.max_tokens or self.policy.default_max_tokens) * call.answers",
   "        output = call.max_tokens or self.policy.default_max_tokens",
   [_in("tests/test_hostile_quotas.py", "test_a_prompt_array_reserves_every_prompt_and_the_too_large_is_never_forwarded")]),
  ("a refund goes to its own window only (memory)", "guardgate/store/windows.py",
   "counter is not None and counter[1] == ends and ends > time.time():",
   "counter is not None:",
   [_in("tests/test_hostile_quotas.py", "test_a_refund_settled_after_its_window_ended_is_not_credited_to_the_next")]),
  ("what an answer cost past its reservation owed in the next window", "guardgate/store/windows.py",
   "        elif delta > 0:\n            await self.hit(key, seconds, delta)",
   "",
   [_in("tests/test_hostile_quotas.py", "test_what_an_answer_costs_past_its_window_is_owed_in_the_next")]),
  ("an answer without usage charged what it reserved", "guardgate/apis/usage.py",
   "        return max(estimate, reserved) if ok else estimate",
   "        return estimate",
   [_in("tests/test_hostile_quotas.py", "test_a_stream_left_before_its_usage_is_charged_what_it_reserved")]),
  ("clearance budgets reserved before forwarding (memory)", "guardgate/store/clearances.py",
   "                or tokens + reserve > output_tokens:",
   "                or False:",
   ["tests/test_hostile_clearances.py::test_a_burst_on_one_clearance_stays_within_its_budget"]),
  ("model routes matched however they are spelled", "guardgate/route.py",
   "        adapter, target = self.match(path)\n        if adapter is None:",
   "        adapter, target = None, None\n        if adapter is None:",
   ["tests/test_hostile_requests.py::test_a_model_route_spelled_otherwise_is_that_route"]),
  ("the operator API however it is spelled", "guardgate/gateway.py",
   '            elif ("%" in path or "_" in path) and self._ops_spelled(path):',
   "            elif False:",
   ["tests/test_operator.py::test_the_operator_api_spelled_otherwise_is_still_the_operator_api"]),
  ("a treated answer too large to treat refused", "guardgate/apis/answers/chain.py",
   '        if cutter.broken == "too large" and chain.treats:',
   "        if False:",
   ["tests/test_hostile_answers.py::test_a_part_too_large_to_treat_is_refused_never_passed_untreated"]),
  ("a treated answer the gateway cannot read refused", "guardgate/answer.py",
   "                if not _readable(chain.streaming, message):",
   "                if False:",
   [_in("tests/test_hostile_answers.py", "test_an_answer_the_gateway_cannot_read_is_refused_never_passed_untreated")]),
  ("answers kept upstream refused to treated callers", "guardgate/treatment.py",
   "    if decision.treatment is not None and not shadow and _untreatable(ex):",
   "    if False:",
   ["tests/test_hostile_answers.py::test_answers_kept_upstream_are_refused_to_a_treated_caller"]),
  ("a cap on the callers the risk state keeps", "guardgate/store/risk.py",
   "        while len(callers) > kept or self._held > self._max_held:",
   "        while False:",
   ["tests/test_hostile_memory.py::test_a_flood_of_new_keys_leaves_memory_under_the_documented_bound"]),
  # Shared intelligence: what leaves describes the campaign, never the customers.
  ("only fingerprints specific to a campaign leave", "guardgate/intel/export.py",
   "if entry.accounts <= 0 or min(entry.risky, entry.accounts) / entry.accounts < config.min_share:",
   "if entry.accounts <= 0:",
   ["tests/intel/test_two_deployments.py::test_a_campaign_caught_at_a_is_caught_on_arrival_at_b"]),
  ("salted values leave as keyed digests", "guardgate/intel/export.py",
   "            value = salted(config.salt, kind, value)\n",
   "",
   ["tests/intel/test_bundle.py::test_a_salted_export_matches_only_where_the_salt_is_held"]),
]


def main() -> int:
    ok = True
    for what, path, old, new, tests in MUTATIONS:
        file = Path(path)
        source = file.read_text()
        assert source.count(old) == 1, (what, path)
        file.write_text(source.replace(old, new))
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                check=False, capture_output=True, text=True,
            )
        finally:
            file.write_text(source)
        out = result.stdout.strip()
        last = out.splitlines()[-1] if out else result.stderr[-200:]
        # Only failing tests count: an import or collection error (exit 2)
        # or a skip (Redis missing) proves nothing.
        failed = result.returncode == 1 and " failed" in last
        ok &= failed
        print(f"{'FAILS (good)' if failed else 'STILL PASSES'}: {what}: {last}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
