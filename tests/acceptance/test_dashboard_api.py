"""The API calls the dashboard added (so that every language has them): listing by time
range and payload, bulk by parent and payload, finished executions per task, worker
capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc
from conductor_worker import Client, InvalidArgument
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
TASKS = "tests.acceptance.dashboard_tasks"


def test_list_by_payload_and_time_range_and_bulk_by_the_same_filter(address, spawn_worker):
    spawn_worker(address, TASKS).stop()  # registers the tasks; nothing runs them
    with Client(address) as client:
        ids = client.invoke_batch(
            "dash-steps", [{"customer": {"id": i % 3}, "tag": f"t{i}"} for i in range(9)]
        )
        page = client.page("dash-steps", payload={"customer.id": 1}, page_size=2)
        assert [e.id for e in page.executions] == [ids[7], ids[4]]
        rest = client.page(
            "dash-steps", payload={"customer.id": 1}, page_token=page.next_page_token
        )
        assert [e.id for e in rest.executions] == [ids[1]] and rest.next_page_token == ""
        assert client.page(payload={"customer.id": "1"}).executions == []  # equality, typed
        assert [e.id for e in client.page(payload={"tag": "t5"}).executions] == [ids[5]]

        created = client.get(ids[0]).created_at
        later = created + timedelta(hours=1)
        assert len(client.page(created_after=created).executions) == 9
        assert client.page(created_after=later).executions == []
        assert client.page(created_before=created).executions == []

        dry = client.bulk("cancel", payload={"customer.id": 2}, dry_run=True)
        assert (dry.matched, dry.changed) == (3, 0)
        done = client.bulk("cancel", task="dash-steps", payload={"customer.id": 2})
        assert done.changed == 3
        states = {e.id: e.state for e in client.list("dash-steps", limit=None)}
        assert [i for i in ids if states[i] == "cancelled"] == [ids[2], ids[5], ids[8]]


def test_bad_filters_are_refused_naming_the_field(address):
    channel = grpc.insecure_channel(address)
    stub = client_pb2_grpc.ConductorServiceStub(channel)
    cases = [
        (client_pb2.ListExecutionsRequest(payload_match_json="[1]"), "payload_match_json"),
        (client_pb2.ListExecutionsRequest(payload_match_json="{"), "payload_match_json"),
        (client_pb2.ListExecutionsRequest(payload_match_json='{"a..b": 1}'),
         "payload_match_json"),
        (client_pb2.ListTaskActivityRequest(window_seconds=5), "window_seconds"),
        (client_pb2.ListTaskActivityRequest(buckets=1000), "buckets"),
    ]
    ranged = client_pb2.ListExecutionsRequest()
    ranged.created_after.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    ranged.created_before.FromDatetime(datetime(2029, 1, 1, tzinfo=UTC))
    cases.append((ranged, "created_before"))
    bulk = client_pb2.BulkExecutionsRequest(
        action=client_pb2.BULK_ACTION_CANCEL,
        filter=client_pb2.ExecutionFilter(parent_id="nope"),
    )
    cases.append((bulk, "filter.parent_id"))
    for request, field in cases:
        call = (stub.ListTaskActivity if isinstance(request, client_pb2.ListTaskActivityRequest)
                else stub.BulkExecutions if isinstance(request, client_pb2.BulkExecutionsRequest)
                else stub.ListExecutions)
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field), caught.value.details()
    channel.close()
    with Client(address) as client, pytest.raises(InvalidArgument, match="created_after"):
        client.page(created_after=datetime(2030, 1, 1))  # noqa: DTZ001 (naive on purpose)


def test_activity_counts_finished_executions_per_bucket_and_workers_show_capacity(
    address, spawn_worker
):
    spawn_worker(address, TASKS)
    with Client(address) as client:
        ok = client.invoke_batch("dash-steps", [{"delay": 0} for _ in range(4)])
        bad = client.invoke_batch("dash-fail", [1, 2])
        for execution_id in ok + bad:
            client.wait(execution_id, timeout=60)
        activity = client.activity()
        assert (activity.window_seconds, activity.buckets) == (3600, 12)
        by_task = {t.task: t for t in activity.tasks}
        assert by_task["dash-steps"].succeeded[-1] == 4 and sum(by_task["dash-steps"].failed) == 0
        assert by_task["dash-fail"].failed[-1] == 2 and sum(by_task["dash-fail"].succeeded) == 0
        assert by_task["dash-hang"].succeeded == [0] * 12  # registered, idle: zeros
        narrow = client.activity(window_seconds=60, buckets=3)
        assert len(narrow.tasks[0].succeeded) == 3

        workers = wait_for(client.workers, what="the worker to be listed")
        # dash-steps: 2 processes; the others 1 each; capacity is at least the processes
        assert workers[0].capacity >= 2 + 1 + 1 + 1
        assert {"dash-steps", "dash-fail", "dash-hang", "dash-gated"} <= set(workers[0].tasks)
