"""Operations on stored executions that users start by hand: rerun (from a step), retry in
place, and bulk cancel / retry / delete by filter; removing a task from the registry."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from datetime import datetime

from .clock import Clock
from .dispatch import Dispatcher
from .models import Execution, FailedPrecondition, InvalidArgument, NotFound, State
from .settings import Settings
from .store import Store
from .store_history import BulkFilter
from .validation import shown

#: executions per bulk page (each page is one short statement)
BULK_BATCH = 1000


class BulkAction(enum.Enum):
    CANCEL = "cancel"
    RETRY = "retry"
    DELETE = "delete"


#: the states each action applies to
ACTION_STATES = {
    BulkAction.CANCEL: (State.PENDING, State.RUNNING),
    BulkAction.RETRY: (State.FAILED, State.CANCELLED),
    BulkAction.DELETE: (State.SUCCEEDED, State.FAILED, State.CANCELLED),
}


class Operations:
    """The rules of rerun, retry, bulk operations and task removal."""

    def __init__(self, store: Store, dispatcher: Dispatcher, clock: Clock, settings: Settings):
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        self.settings = settings

    async def _original(self, execution_id: int) -> tuple[State, bool]:
        found = await self.store.get_execution(execution_id)
        if found is None:
            raise NotFound(f"execution_id: no execution {execution_id}")
        return found.state, found.redacted_at is not None

    async def rerun(
        self, execution_id: int, from_step: str | None, payload: str | None
    ) -> Execution:
        """A new execution of a finished one's task; with `from_step`, the steps saved before
        it are copied. Returns it as created (pending)."""
        state, redacted = await self._original(execution_id)
        copy: list[str] = []
        if from_step is not None:
            names = [s.name for s in await self.store.list_steps(execution_id)]
            if from_step not in names:
                raise InvalidArgument(
                    "from_step", f"execution {execution_id} has no step named {shown(from_step)}"
                )
            copy = names[: names.index(from_step)]
        if not state.finished:
            raise FailedPrecondition(
                f"execution_id: execution {execution_id} is {state.value}; only a finished "
                "execution can be rerun (cancel it first)"
            )
        if redacted and (payload is None or copy):
            raise FailedPrecondition(
                f"execution_id: the data of execution {execution_id} was redacted; rerun it "
                "with a payload and without from_step"
            )
        created = await self.store.rerun(execution_id, payload, copy, self.clock.now())
        if created is None:  # deleted or changed since it was read
            raise NotFound(f"execution_id: no finished execution {execution_id}")
        self.dispatcher.wake(created.task)
        return created

    async def retry(self, execution_id: int) -> Execution:
        """Run a failed or cancelled execution again in place; returns it as the retry left
        it (pending), not as a worker may already have changed it."""
        state, redacted = await self._original(execution_id)
        if state not in ACTION_STATES[BulkAction.RETRY]:
            raise FailedPrecondition(
                f"execution_id: execution {execution_id} is {state.value}; only failed and "
                "cancelled executions can be retried (rerun makes a new one)"
            )
        if redacted:
            raise FailedPrecondition(
                f"execution_id: the payload of execution {execution_id} was redacted; rerun "
                "it with a payload instead"
            )
        retried = await self.store.retry_one(execution_id, self.clock.now())
        if retried is None:
            raise FailedPrecondition(
                f"execution_id: execution {execution_id} cannot be retried now (its dedupe key "
                "is held by an unfinished execution, or it changed meanwhile)"
            )
        self.dispatcher.wake(retried.task)
        return retried

    async def bulk(
        self, action: BulkAction, f: BulkFilter, *, dry_run: bool, everything: bool
    ) -> tuple[int, int]:
        """Apply `action` to every execution matching `f`, page by page; returns (matched,
        changed). Repeating it changes nothing more."""
        applies = ACTION_STATES[action]
        wrong = [s.value for s in f.states if s not in applies]
        if wrong:
            raise InvalidArgument(
                "filter.states", f"{action.value} applies to {', '.join(s.value for s in applies)}"
                f" executions, not {', '.join(wrong)}"
            )
        empty = not (f.states or f.task or f.queue or f.created_after or f.created_before
                     or f.parent_id or f.payload.match_json)
        if action is BulkAction.DELETE and empty and not everything:
            raise InvalidArgument(
                "filter", "empty: this would delete every finished execution; narrow the "
                "filter, or set all to confirm"
            )
        scoped = dataclasses.replace(f, states=f.states or applies)
        matched = changed = 0
        after = 0
        while True:
            ids = await self.store.bulk_page(
                scoped, after, BULK_BATCH, uncancelled=action is BulkAction.CANCEL
            )
            if not ids:
                return matched, changed
            matched += len(ids)
            if not dry_run:
                changed += await self._apply(action, ids, self.clock.now())
            after = ids[-1]
            await asyncio.sleep(0)  # let leasing and other calls in between pages

    async def _apply(self, action: BulkAction, ids: list[int], now: datetime) -> int:
        if action is BulkAction.CANCEL:
            return len(await self.store.cancel_many(ids, now))
        if action is BulkAction.DELETE:
            return await self.store.delete_many(ids)
        retried = await self.store.retry(ids, now)
        for task in {task for _, task in retried}:
            self.dispatcher.wake(task)
        return len(retried)

    async def delete_task(self, name: str, seen_after: datetime) -> int:
        """Remove a task nobody serves and nothing refers to; returns schedules deleted."""
        tasks = {t.name: t for t in await self.store.list_tasks(seen_after)}
        if name not in tasks:
            raise NotFound(f"name: no task named {shown(name)}")
        if tasks[name].workers:
            raise FailedPrecondition(
                f"name: task {shown(name)} is served by {len(tasks[name].workers)} connected "
                "worker(s); stop them first"
            )
        if await self.store.task_in_use(name):
            raise FailedPrecondition(
                f"name: executions of task {shown(name)} remain; delete them first "
                f"(conductor executions delete --task {name}) or wait for retention"
            )
        deleted = await self.store.delete_task(name)
        if deleted is None:
            raise NotFound(f"name: no task named {shown(name)}")
        self.dispatcher.tasks.pop(name, None)
        return deleted
