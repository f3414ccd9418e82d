"""Client._call: one stub call with the operations' tries and error translation (for
Client-only methods written against the stub), without a server."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from conductor_worker import Client, ExecutionNotFound


class Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_call_retries_unavailable_and_translates_errors() -> None:
    answers: list[Any] = [Failed(grpc.StatusCode.UNAVAILABLE, "restarting"), "ok"]
    seen: list[float] = []

    def method(request: Any, timeout: float, metadata: Any) -> Any:
        seen.append(timeout)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with Client("127.0.0.1:1", timeout=5) as client:
        assert client._call(method, "request", retry=True) == "ok"
        assert len(seen) == 2 and all(0 < t <= 5 for t in seen)
        answers.append(Failed(grpc.StatusCode.NOT_FOUND, "execution_id: no execution 9"))
        with pytest.raises(ExecutionNotFound, match="no execution 9"):
            client._call(method, "request")
        answers.append(Failed(grpc.StatusCode.UNAVAILABLE, "down"))
        with pytest.raises(grpc.RpcError):
            client._call(method, "request")  # not retried without retry=True
