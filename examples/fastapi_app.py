"""A FastAPI model server with guardgate mounted as middleware, in one process.

    pip install fastapi
    uvicorn examples.fastapi_app:app --port 8000

The model here is a stand-in that echoes; yours would call its engine.
Every request reaches it through guardgate: callers are identified,
metered, scored and, by tier, challenged, degraded or marked.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from guardgate import GuardGate

model = FastAPI()


@model.post("/v1/chat/completions")
async def chat(request: dict[str, Any]) -> dict[str, Any]:
    prompt = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
    text = f"You asked about: {prompt[:200]}. A large, simple answer follows."
    return {
        "id": "chatcmpl-example",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "example"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": len(text) // 4,
                  "total_tokens": len(prompt) // 4 + 1 + len(text) // 4},
    }


app = GuardGate(
    model,
    policy={
        "identity": {"principal": ["bearer", "ip"]},
        "quotas": [
            {"name": "rpm", "limit": "120/minute"},
            {"name": "tpm", "limit": "50000/minute", "cost": "total_tokens"},
        ],
        "tiers": {"watch": {"score": 0.3, "quota_factor": 0.5},
                  "blocked": {"score": 0.9, "deny": True}},
    },
)
