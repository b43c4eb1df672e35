"""Take each security protection away in turn, run the tests that guard it,
and check that they fail; the source is restored after each.

    python3 tests/security_mutations.py      # from the project's root

Exits 1 if any protection can be removed with its tests still passing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
