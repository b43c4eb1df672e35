"""guardgate mounted as ASGI middleware in front of an in-process model server.

    uvicorn examples.middleware_app:app --port 8000

Any ASGI app works in place of the toy server: a FastAPI or Starlette app
serving OpenAI- or Anthropic-compatible routes. The policy needs no upstream
here, since the wrapped app is the model.
"""

from __future__ import annotations

from guardgate import GuardGate
from guardgate.toy import create_toy_app

model_server = create_toy_app()

app = GuardGate(
    model_server,
    policy={
        "max_body": "2MiB",
        "identity": {"principal": ["bearer", "ip"]},
    },
)
