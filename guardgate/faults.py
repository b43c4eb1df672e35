"""What a storage failure on the request path means: the policy's call
(``on_storage_error``). ``open`` lets the request through untreated,
``closed`` refuses it with 503. Either way the failure is logged and
counted, and the next request tries the storage again, so the gateway
recovers by itself when it returns.
"""

from __future__ import annotations

from guardgate.errors import StorageUnavailable
from guardgate.logs import get_logger
from guardgate.metrics import Metrics

log = get_logger("guardgate")

UNAVAILABLE = "The service is temporarily unavailable. Please retry shortly."


class StorageFaults:
    def __init__(self, on_storage_error: str, shadow: bool, metrics: Metrics) -> None:
        self.mode = on_storage_error
        self.closed = on_storage_error == "closed" and not shadow
        self.metrics = metrics

    def failed(self, operation: str, exc: BaseException) -> None:
        """Log and count a storage failure during ``operation``."""
        self.metrics.storage_errors.labels(operation).inc()
        log.warning("storage error", operation=operation, error=repr(exc),
                    on_storage_error=self.mode)

    def refuse_if_closed(self, exc: BaseException) -> None:
        if self.closed:
            raise unavailable(exc)


def unavailable(exc: BaseException) -> StorageUnavailable:
    return StorageUnavailable(UNAVAILABLE, reason=f"storage unavailable: {exc!r}",
                              headers=[(b"retry-after", b"1")])
