"""One request's state as it moves down the pipeline, and the replies the
gateway writes itself."""

from __future__ import annotations

from guardgate.types import Send


class Exchange:
    """What the steps of one request learn about it; never shared."""

    __slots__ = (
        "bytes_out",
        "complete",
        "gone",
        "request_id",
        "started",
        "status",
        "upstream_latency",
    )

    def __init__(self, request_id: bytes) -> None:
        self.request_id = request_id
        self.status = 0
        self.bytes_out = 0
        self.started = False   # the response start went to the client
        self.complete = False  # the last body message went to the client
        self.gone = False      # the client disconnected and the exchange was cancelled
        self.upstream_latency: float | None = None

    async def reply(
        self,
        send: Send,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        """Answer with a body of the gateway's own."""
        all_headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", self.request_id),
            *(headers or ()),
        ]
        self.status = status
        self.started = True
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        self.bytes_out += len(body)
        self.complete = True
        await send({"type": "http.response.body", "body": body})
