"""The dashboard's list filter and step timeline, without a coordinator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from conductor_ui.filters import FilterError, payload_terms, read_filter
from conductor_ui.timeline import timeline
from conductor_worker import Attempt
from conductor_worker.records import Execution, Step

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_payload_terms_read_json_values_and_fall_back_to_text() -> None:
    assert payload_terms('customer.id=7 flag=true name=ada quoted="7",x=null') == {
        "customer.id": 7, "flag": True, "name": "ada", "quoted": "7", "x": None}
    assert payload_terms("") == {}


@pytest.mark.parametrize(("fields", "field_name"), [
    ({"payload": "customer"}, "payload"),
    ({"payload": "=7"}, "payload"),
    ({"payload": "a..b=1"}, "payload"),
    ({"payload": " ".join(f"k{i}=1" for i in range(21))}, "payload"),
    ({"state": "done"}, "state"),
    ({"parent": "12a"}, "parent"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"created_after": "2026-01-02T00:00", "created_before": "2026-01-01T00:00"},
     "created_before"),
])
def test_a_bad_field_is_named(fields: dict[str, str], field_name: str) -> None:
    with pytest.raises(FilterError) as caught:
        read_filter(fields)
    assert caught.value.field == field_name
    assert str(caught.value).startswith(f"{field_name}: ")


def test_a_filter_round_trips_through_its_query_and_gives_the_client_arguments() -> None:
    f = read_filter({"task": "t", "state": "failed", "created_after": "2026-01-01T10:00",
                     "payload": "customer.id=7", "parent": "", "ignored": "x"})
    assert f.query() == ("task=t&state=failed&created_after=2026-01-01T10%3A00"
                         "&payload=customer.id%3D7")
    again = read_filter(dict(parse_qsl(f.query())))
    assert again == f and again.page_args() == f.page_args()
    assert f.page_args() == {
        "task": "t", "state": "failed", "queue": None, "parent_id": None,
        "created_after": datetime(2026, 1, 1, 10, 0, tzinfo=UTC), "created_before": None,
        "payload": {"customer.id": 7}}
    assert f.query(page="99").endswith("&page=99")
    assert read_filter({}).empty and not f.empty


def _execution(runs: list[Attempt], finished: datetime | None) -> Execution:
    return Execution("1", "t", "succeeded" if finished else "running", len(runs), 3, None,
                     None, None, 0, "default", T0, T0, T0, finished, None, False,
                     attempts=tuple(runs))


def _run(number: int, start: float, end: float | None, outcome: str) -> Attempt:
    return Attempt(number, number, "w", T0 + timedelta(seconds=start),
                   T0 + timedelta(seconds=end) if end is not None else None, outcome, "", None)


def test_steps_are_placed_in_their_runs_with_durations() -> None:
    runs = [_run(1, 0, 4, "failed"), _run(2, 10, 20, "succeeded")]
    steps = [Step("copied", 1, T0 - timedelta(hours=1)),
             Step("a", 1, T0 + timedelta(seconds=1)), Step("b", 2, T0 + timedelta(seconds=3)),
             Step("c", 3, T0 + timedelta(seconds=15))]
    spans = timeline(_execution(runs, T0 + timedelta(seconds=20)), steps, T0)
    assert [(s.name, s.run, s.seconds) for s in spans] == [
        ("copied", None, None), ("a", 1, 1.0), ("b", 1, 2.0), ("c", 2, 5.0)]
    c = spans[-1]
    assert c.offset == pytest.approx(50.0) and c.width == pytest.approx(25.0)
    assert all(0 <= s.offset <= 100 and s.offset + s.width <= 100.0001 for s in spans)


def test_a_running_execution_is_measured_to_now_and_no_steps_is_empty() -> None:
    now = T0 + timedelta(seconds=10)
    spans = timeline(_execution([_run(1, 0, None, "running")], None),
                     [Step("a", 1, T0 + timedelta(seconds=5))], now)
    assert spans[0].seconds == 5.0 and spans[0].width == pytest.approx(50.0)
    assert timeline(_execution([], None), [], now) == []
