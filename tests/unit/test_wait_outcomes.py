"""Reading a wait's recorded outcome in the handler (conductor_worker/workflow.py): the
error the coordinator records for an outcome over the steps limit comes first."""

from __future__ import annotations

import pytest

from conductor_worker import ChildTimeout, ResultTooLarge
from conductor_worker.errors import WorkflowError
from conductor_worker.workflow import _event, _results, _signal

TOO_LARGE = {"bytes": 200_000, "steps_bytes": 10, "limit": 100_000}


@pytest.mark.parametrize("timeout", [False, True])
def test_children_outcome_too_large_raises_result_too_large(timeout):
    with pytest.raises(ResultTooLarge) as caught:
        _results({"timeout": timeout, "too_large": TOO_LARGE}, "fan", return_exceptions=True)
    error = caught.value
    assert (error.step, error.size, error.steps_bytes, error.limit) == (
        "fan", 200_000, 10, 100_000)
    assert str(error) == ("step 'fan': the wait's outcome is 200000 bytes; with the 10 bytes"
                          " of the execution's other steps it would pass the limit of 100000"
                          " bytes (--max-steps-bytes)")
    assert isinstance(error, WorkflowError)  # not retried: the outcome is recorded


def test_event_and_signal_outcomes_too_large_raise_result_too_large():
    with pytest.raises(ResultTooLarge, match="step 'paid'"):
        _event({"timeout": False, "too_large": TOO_LARGE}, "paid", "order.paid")
    with pytest.raises(ResultTooLarge, match="step 'signal:ok'"):
        _signal({"timeout": False, "too_large": TOO_LARGE}, "ok")


def test_outcomes_without_the_error_read_as_before():
    children = [{"id": "5", "state": "succeeded", "result": 1, "error": None}]
    assert _results({"timeout": False, "children": children}, "fan", False) == [1]
    with pytest.raises(ChildTimeout):
        running = {"id": "6", "state": "running", "result": None, "error": None}
        _results({"timeout": True, "children": [*children, running]}, "fan", False)
    assert _event({"timeout": False, "event": {"a": 1}}, "paid", "order.paid") == {"a": 1}
    assert _signal({"timeout": False, "signal": "yes"}, "ok") == "yes"
