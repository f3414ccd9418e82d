"""Hypothesis strategies for hostile requests: every client RPC, every worker message kind
and Register, with the values that broke the coordinator once (NUL, lone surrogates in JSON
escapes, deep nesting, huge numbers and names, times out of range) mixed into ordinary ones."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from conductor.v1 import client_pb2, common_pb2, worker_pb2

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, 1.0, -1.0, 1e12, 1e300, 1e-300]
)
# protobuf strings must be valid UTF-8: no surrogate code points (JSON escapes can hold them)
PLAIN = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
SPECIAL_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "known",
        "fz",
        "x" * 201,
        "y" * 5000,
        " ",
        "\n",
        "é",
        "🙂",
        "default",
        "UTC",
        "Europe/Berlin",
        "* * * * *",
        "0 0 30 2 *",
        "../../etc",
    ]
)
TEXT = SPECIAL_TEXT | PLAIN


def mostly(valid: Any, hostile: st.SearchStrategy[Any] = TEXT) -> st.SearchStrategy[Any]:
    """`valid` (a value or strategy) four times in five, else `hostile`, so that requests
    with one bad field among good ones are common (each field is checked on its own)."""
    good = valid if isinstance(valid, st.SearchStrategy) else st.just(valid)
    return st.integers(0, 4).flatmap(lambda n: hostile if n == 0 else good)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | PLAIN,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(PLAIN, children, max_size=4),
    max_leaves=20,
)
HOSTILE_JSON = st.sampled_from(
    [
        "",
        "null",
        "{",
        "NaN",
        "Infinity",
        "1e999999",
        "-1e400",
        "1" * 5000,
        '"\\ud800"',
        '"\\udfff x"',
        '{"a": "\\u0000"}',
        '["\\u0000"]',
        '"\\\\u0000"',
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 200 + "1" + "}" * 200,
        '"' + "z" * 3000 + '"',
        "tru",
        "[1,]",
        "\x00",
    ]
)
JSON = HOSTILE_JSON | _JSON_VALUES.map(json.dumps) | PLAIN


@st.composite
def timestamps(draw: Any) -> Timestamp:
    seconds = draw(
        mostly(
            st.sampled_from([0, -1, 253402300800, 253402300800 * 10, -62135596801, 1_800_000_000]),
            INT64,
        )
    )
    nanos = draw(mostly(st.sampled_from([0, -1, 999_999_999, 1_000_000_000]), INT32))
    return Timestamp(seconds=seconds, nanos=nanos)


EXECUTION_IDS = mostly(
    st.sampled_from(["", "1", "0", "-1", "abc", "9" * 40, "1e3", " 1", "\u0661"]), PLAIN
)


@st.composite
def invoke_options(draw: Any) -> client_pb2.InvokeOptions:
    options = client_pb2.InvokeOptions(
        delay_seconds=draw(mostly(st.sampled_from([0.0]), DOUBLES)),
        priority=draw(mostly(st.sampled_from([0]), INT32)),
        dedupe_key=draw(mostly(st.sampled_from([""]), TEXT)),
        queue=draw(mostly(st.sampled_from([""]), TEXT)),
        max_attempts=draw(mostly(st.sampled_from([0]), INT32)),
    )
    if draw(st.booleans()):
        options.run_at.CopyFrom(draw(timestamps()))
    return options


@st.composite
def client_requests(draw: Any) -> tuple[str, Any]:
    """(method name, request) for any of the 13 client RPCs."""
    task = draw(mostly(st.just("known")))
    method = draw(
        st.sampled_from(
            [
                "Invoke",
                "InvokeBatch",
                "GetExecution",
                "WaitExecution",
                "CancelExecution",
                "ListExecutions",
                "PutSchedule",
                "DeleteSchedule",
                "ListSchedules",
                "ListSteps",
                "ListWorkers",
                "ListQueues",
                "ListTaskActivity",
            ]
        )
    )
    if method == "Invoke":
        return method, client_pb2.InvokeRequest(
            task=task, payload_json=draw(JSON), options=draw(invoke_options())
        )
    if method == "InvokeBatch":
        return method, client_pb2.InvokeBatchRequest(
            task=task,
            payloads_json=draw(st.lists(JSON, max_size=5)),
            options=draw(invoke_options()),
        )
    if method in ("GetExecution", "CancelExecution", "ListSteps"):
        request = getattr(client_pb2, f"{method}Request")
        return method, request(execution_id=draw(EXECUTION_IDS))
    if method == "WaitExecution":
        return method, client_pb2.WaitExecutionRequest(
            execution_id=draw(EXECUTION_IDS), timeout_seconds=draw(DOUBLES)
        )
    if method == "ListExecutions":
        listing = client_pb2.ListExecutionsRequest(
            task=draw(mostly(st.sampled_from([""]), TEXT)),
            queue=draw(mostly(st.sampled_from([""]), TEXT)),
            states=draw(st.lists(st.integers(0, 9), max_size=3)),
            page_size=draw(mostly(st.sampled_from([0, 1000, 1001]), INT32)),
            page_token=draw(mostly(st.sampled_from([""]), EXECUTION_IDS)),
            payload_match_json=draw(mostly(st.sampled_from(["", '{"a.b": 1}']), JSON)),
        )
        for name in ("created_after", "created_before"):
            if draw(st.booleans()):
                getattr(listing, name).CopyFrom(draw(timestamps()))
        return method, listing
    if method == "ListTaskActivity":
        return method, client_pb2.ListTaskActivityRequest(
            window_seconds=draw(mostly(st.sampled_from([0, 60, 86400]), INT32)),
            buckets=draw(mostly(st.sampled_from([0, 1, 120]), INT32)),
        )
    if method == "PutSchedule":
        return method, client_pb2.PutScheduleRequest(
            schedule=client_pb2.Schedule(
                task=task,
                name=draw(mostly(st.sampled_from(["nightly", "hourly"]))),
                cron=draw(mostly(st.sampled_from(["* * * * *"]), TEXT)),
                timezone=draw(mostly("UTC")),
                payload_json=draw(mostly("null", JSON)),
                missed=draw(mostly(0, st.integers(0, 5))),
                missed_limit=draw(mostly(1, INT32)),
            )
        )
    if method == "DeleteSchedule":
        return method, client_pb2.DeleteScheduleRequest(task=task, name=draw(TEXT))
    if method == "ListSchedules":
        return method, client_pb2.ListSchedulesRequest(
            task=draw(mostly(st.sampled_from([""]), TEXT))
        )
    request = getattr(client_pb2, f"{method}Request")
    return method, request()


@st.composite
def task_definitions(draw: Any) -> worker_pb2.TaskDefinition:
    task = worker_pb2.TaskDefinition(
        name=draw(mostly(st.sampled_from(["reg-a", "reg-b", "reg-c"]))),
        processes=draw(mostly(st.sampled_from([1]), INT32)),
        capacity=draw(mostly(st.sampled_from([1, 10]), INT32)),
        max_attempts=draw(mostly(st.sampled_from([1, 3]), INT32)),
        retry=worker_pb2.RetryPolicy(
            initial_backoff_seconds=draw(mostly(st.sampled_from([1.0]), DOUBLES)),
            max_backoff_seconds=draw(mostly(st.sampled_from([60.0]), DOUBLES)),
            multiplier=draw(mostly(st.sampled_from([2.0]), DOUBLES)),
            jitter=draw(mostly(st.sampled_from([0.1]), DOUBLES)),
            non_retryable_errors=draw(mostly(st.just([]), st.lists(TEXT, max_size=3))),
        ),
        timezone=draw(mostly(st.sampled_from(["", "UTC"]), TEXT)),
        concurrency=draw(mostly(st.sampled_from([0]), INT32)),
    )
    if draw(st.integers(0, 3)) == 0:
        task.window.start = draw(mostly(st.sampled_from(["09:00", "25:00", "\x00"]), PLAIN))
        task.window.end = draw(mostly(st.sampled_from(["17:00", "09:00"]), PLAIN))
    for n in range(draw(st.integers(0, 2))):
        task.schedules.add(
            name=draw(mostly(f"s{n}")), cron=draw(mostly(st.sampled_from(["* * * * *"]), TEXT))
        )
    return task


@st.composite
def registers(draw: Any) -> worker_pb2.Register:
    return worker_pb2.Register(
        worker_id=draw(mostly("fuzz-worker")),
        hostname=draw(mostly("host")),
        pid=draw(INT32),
        tasks=draw(
            mostly(
                st.lists(task_definitions(), min_size=1, max_size=3),
                st.lists(task_definitions(), max_size=3),
            )
        ),
        held_leases=[
            worker_pb2.LeaseRef(execution_id=draw(EXECUTION_IDS), lease_token=draw(TEXT))
            for _ in range(draw(mostly(0, st.integers(0, 2))))
        ],
        drain=draw(st.booleans()),
    )


#: placeholders the harness replaces with a real lease it holds (id, token)
LEASE_ID, LEASE_TOKEN = "@lease", "@token"


@st.composite
def worker_messages(draw: Any) -> worker_pb2.WorkerMessage:
    """A step save, outcome or heartbeat batch naming real leases (placeholders LEASE_ID +
    index and LEASE_TOKEN, filled in by the harness) or garbage."""

    def ref() -> tuple[str, str]:
        real, index = draw(st.booleans()), draw(st.integers(0, 1000))
        execution_id, token = draw(EXECUTION_IDS), draw(TEXT)
        wrong = draw(st.integers(0, 4)) == 0  # a real id with a wrong token, or the reverse
        if not real:
            return execution_id, token
        return (execution_id if wrong else f"{LEASE_ID}{index}"), LEASE_TOKEN

    kind = draw(st.sampled_from(["step_saves", "outcomes", "heartbeat"]))
    count = draw(st.integers(1, 4))
    if kind == "step_saves":
        items = []
        for _ in range(count):
            execution_id, token = ref()
            items.append(
                worker_pb2.StepSave(
                    execution_id=execution_id,
                    lease_token=token,
                    name=draw(TEXT),
                    result_json=draw(JSON),
                )
            )
        return worker_pb2.WorkerMessage(step_saves=worker_pb2.StepSaves(items=items))
    if kind == "outcomes":
        outcomes = []
        for _ in range(count):
            execution_id, token = ref()
            outcome = worker_pb2.Outcome(execution_id=execution_id, lease_token=token)
            result = draw(st.sampled_from(["completed", "failed", "released", None]))
            if result == "completed":
                outcome.completed.result_json = draw(JSON)
            elif result == "failed":
                outcome.failed.CopyFrom(
                    worker_pb2.Failed(
                        error=common_pb2.ErrorInfo(
                            type=draw(TEXT), message=draw(TEXT), traceback=draw(TEXT)
                        ),
                        retryable=draw(st.booleans()),
                    )
                )
            elif result == "released":
                outcome.released.reason = draw(st.integers(0, 9))
                if draw(st.booleans()):
                    outcome.released.run_at.CopyFrom(draw(timestamps()))
            outcomes.append(outcome)
        return worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=outcomes))
    refs = [ref() for _ in range(count)]
    return worker_pb2.WorkerMessage(
        heartbeat=worker_pb2.Heartbeat(
            leases=[worker_pb2.LeaseRef(execution_id=e, lease_token=t) for e, t in refs]
        )
    )
