"""The Lua scripts shipped in ``guardgate/store/lua``, loaded once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError


@dataclass(frozen=True, slots=True)
class LuaScript:
    source: str
    sha: str

    @classmethod
    def named(cls, name: str) -> LuaScript:
        source = resources.files("guardgate.store").joinpath(f"lua/{name}.lua").read_text()
        return cls(source, hashlib.sha1(source.encode()).hexdigest())

    async def run(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        """Run by hash; a Redis that lost its scripts (restarted) gets the source."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)
