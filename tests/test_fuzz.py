"""A short run of bench/fuzz.py in the suite: every parser, generated
inputs, a fixed seed, no unhandled exception (the full 100,000-input run is
``python bench/fuzz.py``)."""

from __future__ import annotations

import pytest

from bench import fuzz


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_no_parser_fails_on_generated_input(target: str) -> None:
    examples = 60 if target == "policy" else 400
    # Every input reached the parser (a failure would have raised).
    assert fuzz.TARGETS[target](examples, 7) == examples
