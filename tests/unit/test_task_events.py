"""@task(on=..., filter=...): checked when the task is defined, sent at registration."""

from __future__ import annotations

import json

import pytest

from conductor_worker import TaskDefinitionError, task
from conductor_worker.runtime import task_definition


def _handler(event, ctx):
    return None


@pytest.mark.parametrize(("options", "problem"), [
    ({"on": "bad name!"}, "on: 'bad name!' is not an event name"),
    ({"on": ["a", "a"]}, "on: lists an event twice"),
    ({"filter": {"x": 1}}, "filter: needs on="),
    ({"on": "a", "filter": {"a..b": 1}}, "filter: key 'a..b' is not a dotted path"),
    ({"on": "a", "filter": {"x": object()}}, "filter: value of 'x' is not JSON"),
])
def test_bad_event_options_fail_at_definition(options, problem):
    with pytest.raises(TaskDefinitionError, match=problem):
        task(name="t-events-bad", **options)(_handler)


def test_subscriptions_are_registered_with_their_filter():
    defined = task(name="t-events", on=["order.created", "order.paid"],
                   filter={"customer.tier": "gold"})(_handler)
    subs = task_definition(defined).subscriptions
    assert [s.event for s in subs] == ["order.created", "order.paid"]
    assert [json.loads(s.filter_json) for s in subs] == [{"customer.tier": "gold"}] * 2
    plain = task(name="t-events-plain", on="x")(_handler)
    assert [(s.event, s.filter_json) for s in task_definition(plain).subscriptions] == [("x", "")]
