"""tests/security_mutations.py takes each protection away by editing one
line of the source: each line it edits must still be there, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security_mutations import MUTATIONS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("what", "path", "old"), [m[:3] for m in MUTATIONS],
                         ids=[m[0] for m in MUTATIONS])
def test_every_protection_the_mutations_remove_is_in_the_source(
        what: str, path: str, old: str) -> None:
    assert (ROOT / path).read_text().count(old) == 1, what
