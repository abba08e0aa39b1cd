"""Errors. Match on `code`, never on `message`: codes are stable, messages are for people."""

from __future__ import annotations

from typing import Optional

__all__ = ["BerthConnectionError", "BerthError"]


class BerthError(Exception):
    """Berth answered with an error.

    `status` is the HTTP status; `code` one of Berth's stable error codes (`not_found`,
    `quota_exceeded`, `engine_unavailable`, ...); `message` says what went wrong and, where it
    helps, what to do.
    """

    def __init__(
        self, status: Optional[int], code: str, message: str, retry_after: Optional[int] = None
    ) -> None:
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code
        self.message = message
        #: With `rate_limited`: seconds until Berth lets this token through again.
        self.retry_after = retry_after


class BerthConnectionError(BerthError):
    """Berth could not be reached, or the connection broke: retrying may help."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "unreachable", message)
