"""The polling trigger against the emulator: every change exactly once across runs, with writes
landing between and during runs, deletes, small batches, filters, and expired delta tokens."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest
import pytest_asyncio

from d365_components.connections import BatchOperation
from d365_components.definitions import Connection, Context
from d365_components.errors import TransientError
from d365_components.runtime import open_connection, parse_inputs, poll
from d365_components.triggers.polling import ChangedRows, PollingError

KEY = "dynamics365.changed_rows"


@pytest_asyncio.fixture
async def client(connection):
    conn = open_connection(connection)
    try:
        yield conn.open_client()
    finally:
        await conn.aclose()


async def _tracking_served(client) -> bool:
    response = await client.request("GET", "contacts", params={"$select": "contactid"},
                                    prefer=["odata.track-changes", "odata.maxpagesize=1"])
    return "odata.track-changes" in response.headers.get("Preference-Applied", "")


class Meddler:
    """The real client, plus one queued write run after each read: rows change while a run is in progress."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.queued: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def _meddle(self) -> None:
        if self.queued:
            await self.queued.pop(0)()

    async def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(*args, **kwargs)
        await self._meddle()
        return response

    async def get_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        body = await self.client.get_json(*args, **kwargs)
        await self._meddle()
        return body

    async def rows(self, *args: Any, **kwargs: Any):
        async for row in self.client.rows(*args, **kwargs):
            yield row
        await self._meddle()

    async def pages(self, *args: Any, **kwargs: Any):
        async for page in self.client.pages(*args, **kwargs):
            await self._meddle()  # between reading this page and the next
            yield page


class Ledger:
    """What was written, what was delivered, and the exactly-once rules between the two."""

    def __init__(self, client: Any, entity_set: str, pk: str, *, name_column: str) -> None:
        self.client, self.entity_set, self.pk, self.name_column = client, entity_set, pk, name_column
        self.final: dict[str, int | None] = {}  # id -> last version written (None: deleted)
        self.delivered: dict[str, list[tuple[str, int | None]]] = {}
        self.resyncs = 0

    async def create(self, label: str) -> None:
        made = await self.client.create(self.entity_set, {self.name_column: label}, return_representation=True)
        self.final[made["id"]] = made["row"]["versionnumber"]

    async def update(self, row_id: str, label: str) -> None:
        row = await self.client.update(self.entity_set, row_id, {self.name_column: label}, return_representation=True)
        self.final[row_id] = row["versionnumber"]

    async def delete(self, row_id: str) -> None:
        await self.client.delete(self.entity_set, row_id)
        self.final[row_id] = None

    def live(self) -> list[str]:
        return [i for i, v in self.final.items() if v is not None]

    def take(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["kind"] == "resync":
                self.resyncs += 1
                continue
            version = event["row"]["versionnumber"] if event["row"] else None
            history = self.delivered.setdefault(event["id"], [])
            assert (event["kind"], version) not in history, f"delivered twice: {event}"
            if event["kind"] == "created":
                assert not history, f"created after other events: {event}"
            if version is not None and history and history[-1][1] is not None and not self.resyncs:
                assert version > history[-1][1], f"older version after a newer one: {event}"
            history.append((event["kind"], version))

    def check(self, *, deletes_seen: bool) -> None:
        for row_id, version in self.final.items():
            history = self.delivered.get(row_id)
            if version is None:
                if deletes_seen:
                    assert history and history[-1][0] == "deleted", f"delete of {row_id} not delivered"
                continue
            assert history, f"{row_id} never delivered"
            assert history[-1][1] == version, f"{row_id}: last delivered {history[-1]}, wrote {version}"
            if history[0][0] != "deleted":
                assert history[0][0] == "created" and all(k == "updated" for k, _ in history[1:]), history


async def _drain(trigger_client: Any, inputs: dict[str, Any], cursor: Any, ledger: Ledger, *, limit: int = 200) -> Any:
    trigger, typed = ChangedRows(), parse_inputs(ChangedRows, inputs)
    quiet = 0  # a run may hold a change back for the next one: caught up after two empty runs
    for _ in range(limit):
        result = await trigger.poll(Context(client=trigger_client), typed, cursor)
        ledger.take(result.events)
        cursor = json.loads(json.dumps(result.cursor))  # hosts persist it as JSON
        quiet = 0 if result.events or trigger_client.queued else quiet + 1
        if quiet == 2:
            return cursor
    raise AssertionError("polling never caught up")


async def _scenario(client: Any, entity_set: str, pk: str, column: str, *, deletes: bool, seed: int) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger(client, entity_set, pk, name_column=column)
    meddler = Meddler(client)
    inputs = {"entityType": entity_set, "fieldNames": [column], "batchSize": 3}
    # baseline: what exists now is not a change
    for i in range(4):
        await ledger.create(f"before {seed}-{i}")
    cursor = (await ChangedRows().poll(Context(client=client), parse_inputs(ChangedRows, inputs), None)).cursor
    ledger.final.clear()

    async def write(step: int) -> None:
        choice = rng.random()
        live = ledger.live()
        if choice < 0.4 or not live:
            await ledger.create(f"row {seed}-{step}")
        elif choice < 0.8 or not deletes:
            await ledger.update(rng.choice(live), f"update {seed}-{step}")
        else:
            await ledger.delete(rng.choice(live))

    for step in range(40):
        if rng.random() < 0.3:  # a write lands in the middle of the next run
            meddler.queued.append(lambda s=step: write(s))
        else:
            await write(step)
        if rng.random() < 0.35:
            result = await ChangedRows().poll(Context(client=meddler), parse_inputs(ChangedRows, inputs), cursor)
            ledger.take(result.events)
            cursor = json.loads(json.dumps(result.cursor))  # hosts persist it as JSON
            assert len(result.events) <= 3
    await _drain(meddler, inputs, cursor, ledger)
    return ledger


async def test_modifiedon_cursor_delivers_every_change_once(client, untracked_table):
    # a table without change tracking: the modifiedon + id cursor, many rows per second
    for seed in (1, 2):
        ledger = await _scenario(client, *untracked_table, deletes=False, seed=seed)
        ledger.check(deletes_seen=False)
        assert ledger.delivered


async def test_change_tracking_delivers_every_change_and_delete_once(client):
    if not await _tracking_served(client):
        pytest.skip("the emulator does not serve change tracking yet")
    for seed in (3, 4):
        ledger = await _scenario(client, "tasks", "activityid", "subject", deletes=True, seed=seed)
        ledger.check(deletes_seen=True)
        assert any(h[-1][0] == "deleted" for h in ledger.delivered.values())


async def test_start_date_backfills_and_kinds_filter(client, untracked_table):
    entity_set, pk, subject = untracked_table
    ledger = Ledger(client, entity_set, pk, name_column=subject)
    await ledger.create("old")
    first = await poll(KEY, {"entityType": "new_pollnote", "startDate": "2000-01-01T00:00:00Z",
                             "fieldNames": [subject], "batchSize": 5000}, None, client_spec(client))
    assert {e["id"] for e in first.events} >= set(ledger.final)
    assert {e["kind"] for e in first.events} == {"created"}

    only_updates = {"entityType": entity_set, "changeKinds": ["updated"], "fieldNames": [subject]}
    cursor = (await poll(KEY, only_updates, None, client_spec(client))).cursor
    await ledger.create("new")
    [new_id] = [i for i in ledger.final if ledger.final[i] and i not in {e["id"] for e in first.events}]
    await ledger.update(new_id, "new, edited")
    assert (await poll(KEY, only_updates, cursor, client_spec(client))).events == []  # created, then edited: still new
    cursor = (await poll(KEY, only_updates, cursor, client_spec(client))).cursor
    await ledger.update(new_id, "edited again")
    [event] = (await poll(KEY, only_updates, cursor, client_spec(client))).events
    assert event["kind"] == "updated" and event["row"][subject] == "edited again"


async def test_filter_expression_applies_in_both_modes(client, untracked_table):
    tracked = await _tracking_served(client)
    for entity_set, subject in ((untracked_table[0], untracked_table[2]), ("tasks", "subject")):
        if entity_set == "tasks" and not tracked:
            continue
        inputs = {"entityType": entity_set, "fieldNames": [subject], "filterExpression": f"startswith({subject},'keep')"}
        cursor = (await poll(KEY, inputs, None, client_spec(client))).cursor
        keep = await client.create(entity_set, {subject: "keep me"})
        await client.create(entity_set, {subject: "drop me"})
        result = await poll(KEY, inputs, cursor, client_spec(client))
        assert [(e["kind"], e["id"]) for e in result.events] == [("created", keep["id"])], entity_set


async def test_expired_delta_token_resyncs_without_losing_changes(client, trigger_emulator):
    if not await _tracking_served(client):
        pytest.skip("the emulator does not serve change tracking yet")
    ledger = Ledger(client, "tasks", "activityid", name_column="subject")
    inputs = {"entityType": "tasks", "fieldNames": ["subject"]}
    cursor = (await poll(KEY, inputs, None, client_spec(client))).cursor
    await ledger.create("before expiry")
    result = await poll(KEY, inputs, cursor, client_spec(client))
    ledger.take(result.events)
    cursor = result.cursor
    await ledger.create("during the outage")
    await ledger.update(ledger.live()[0], "edited during the outage")
    # the host kept the cursor too long: its delta token is now older than the org allows
    tracking = trigger_emulator.app.state.change_tracking
    max_age, tracking.max_age = tracking.max_age, -1
    try:
        first = await poll(KEY, inputs, cursor, client_spec(client))
    finally:
        tracking.max_age = max_age
    assert first.events[0]["kind"] == "resync" and "expired" in first.events[0]["reason"]
    ledger.take(first.events)
    await _drain(Meddler(client), inputs, first.cursor, ledger)
    ledger.check(deletes_seen=True)
    assert ledger.resyncs == 1


async def test_bad_tables_and_cursors_are_named(client):
    with pytest.raises(PollingError, match="nosuchtable"):
        await poll(KEY, {"entityType": "nosuchtable"}, None, client_spec(client))
    with pytest.raises(PollingError, match="cursor"):
        await poll(KEY, {"entityType": "annotations"}, {"something": "else"}, client_spec(client))


def client_spec(client: Any) -> Any:
    """The connection behind ``client`` (the runtime takes a connection, not a client)."""
    return _Borrowed(client)


class _Borrowed(Connection):
    """Lends an open client to the runtime (which never closes a Connection it was handed)."""

    key = "tests.borrowed"
    label = "Borrowed client"

    def __init__(self, client: Any) -> None:
        super().__init__(None)
        self.client = client

    def open_client(self) -> Any:
        return self.client

    async def aclose(self) -> None:
        pass


async def test_a_burst_bigger_than_a_run_can_reread_still_drains(client, untracked_table):
    """More rows modified within the overlap window than a run re-reads in small pages must not
    stall the modifiedon cursor (every run re-reads the window before reaching new rows)."""
    entity_set, pk, subject = untracked_table
    ledger = Ledger(client, entity_set, pk, name_column=subject)
    inputs = {"entityType": entity_set, "fieldNames": [subject], "batchSize": 3}
    cursor = (await ChangedRows().poll(Context(client=client), parse_inputs(ChangedRows, inputs), None)).cursor
    await client.batch([BatchOperation("POST", entity_set, body={subject: f"burst {i}"}) for i in range(160)])
    rows = [r async for r in client.rows(entity_set, params={
        "$select": f"{pk},versionnumber", "$filter": f"startswith({subject},'burst ')"})]
    ledger.final.update({r[pk]: r["versionnumber"] for r in rows})
    await _drain(Meddler(client), inputs, cursor, ledger, limit=80)
    ledger.check(deletes_seen=False)


async def test_a_failed_run_leaves_the_cursor_as_it_was(client, untracked_table):
    """The host keeps the old cursor when a run fails; running again from it loses and repeats nothing."""
    entity_set, pk, subject = untracked_table
    ledger = Ledger(client, entity_set, pk, name_column=subject)
    inputs = {"entityType": entity_set, "fieldNames": [subject], "batchSize": 2}
    cursor = (await ChangedRows().poll(Context(client=client), parse_inputs(ChangedRows, inputs), None)).cursor
    for i in range(5):
        await ledger.create(f"fails once {i}")
    kept = json.dumps(cursor)
    flaky = Meddler(client)

    async def fail() -> None:
        raise TransientError("the network went away mid-run")

    flaky.queued.append(fail)
    with pytest.raises(TransientError):
        await ChangedRows().poll(Context(client=flaky), parse_inputs(ChangedRows, inputs), cursor)
    assert json.dumps(cursor) == kept
    await _drain(Meddler(client), inputs, cursor, ledger)
    ledger.check(deletes_seen=False)


async def test_a_row_changed_between_the_delta_and_the_filter_reread_is_delivered_once(client):
    """Change tracking cannot filter, so changed rows are re-read through the filter; a write landing
    between the two reads is the next delta's to deliver, not this run's too."""
    if not await _tracking_served(client):
        pytest.skip("the emulator does not serve change tracking yet")
    ledger = Ledger(client, "tasks", "activityid", name_column="subject")
    inputs = {"entityType": "tasks", "fieldNames": ["subject"], "filterExpression": "startswith(subject,'keep')"}
    cursor = (await poll(KEY, inputs, None, client_spec(client))).cursor
    await ledger.create("keep, first")
    [row_id] = ledger.live()
    await asyncio.sleep(1.1)  # a later creation second, delivered in the same run: the held row is still new
    await ledger.create("keep, second")
    meddler = Meddler(client)
    meddler.queued.append(lambda: ledger.update(row_id, "keep, edited while the run reads"))
    await _drain(meddler, inputs, cursor, ledger)
    ledger.check(deletes_seen=True)
