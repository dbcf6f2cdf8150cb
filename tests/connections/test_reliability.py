"""Retries, throttling and the concurrency limiter, through a fault proxy on real sockets."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import pytest_asyncio

from d365_components.actions._lookups import metadata_for
from d365_components.connections.batch import BatchOperation
from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.connections.retry import Limiter, RetryPolicy
from d365_components.emulator import defaults
from d365_components.errors import (
    DataverseError,
    InputValidationError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from d365_components.runtime import invoke


@pytest_asyncio.fixture
async def connect(emulator, fault_proxy):
    """Connections whose Web API traffic goes through the fault proxy (tokens straight from the emulator)."""
    opened: list[ClientCredentialsConnection] = []

    def make(**overrides) -> ClientCredentialsConnection:
        settings = {"webApiUrl": fault_proxy.url, "scopes": f"{emulator.org_url}/.default", "retryBudgetSeconds": 10}
        inputs = emulator.connection_inputs(**{**settings, **overrides})
        connection = ClientCredentialsConnection(inputs)
        opened.append(connection)
        return connection

    yield make
    for connection in opened:
        await connection.aclose()


async def test_a_429_storm_is_ridden_out_honouring_retry_after(connect, fault_proxy):
    client = connect().open_client()
    fault_proxy.script = ["429:0.2", "429:0.2", "429:0.2"]
    started = time.monotonic()
    who = await client.whoami()
    assert who["OrganizationId"] == defaults.ORGANIZATION_ID
    assert time.monotonic() - started >= 0.6  # never sooner than Retry-After
    assert [s.action for s in fault_proxy.seen] == ["429:0.2", "429:0.2", "429:0.2", "forward"]
    await client.aclose()


async def test_throttling_past_the_budget_raises_with_retry_after(connect, fault_proxy):
    client = connect(retryBudgetSeconds=1).open_client()
    fault_proxy.script = ["429:30"]
    started = time.monotonic()
    with pytest.raises(ThrottledError) as caught:
        await client.whoami()
    assert time.monotonic() - started < 1.0  # waiting 30 s would blow the budget: give up at once
    assert caught.value.retry_after == 30
    assert caught.value.code == "0x80072322"
    assert "Hint:" in str(caught.value)


async def test_throttled_create_is_retried_because_nothing_ran(connect, fault_proxy):
    client = connect().open_client()
    fault_proxy.script = ["429:0.05", "ok"]
    created = await client.create("accounts", {"name": "Retried once"})
    assert created["id"] == "00000000-0000-4000-8000-0000000000f1"
    assert len(fault_proxy.requests("POST")) == 2
    await client.aclose()


async def test_5xx_on_reads_backs_off_and_succeeds(connect, fault_proxy):
    client = connect().open_client()
    client.retry = RetryPolicy(base_delay=0.05, budget=10)
    fault_proxy.script = ["503", "502", "504"]
    assert (await client.whoami())["OrganizationId"] == defaults.ORGANIZATION_ID
    assert len(fault_proxy.seen) == 4
    await client.aclose()


async def test_gateway_error_on_create_is_not_resent(connect, fault_proxy):
    client = connect().open_client()
    fault_proxy.script = ["502", "ok"]
    with pytest.raises(TransientError, match="502"):
        await client.create("accounts", {"name": "Maybe created"})
    assert len(fault_proxy.requests("POST")) == 1
    await client.aclose()


async def test_dropped_connection_retries_a_read(connect, fault_proxy):
    client = connect().open_client()
    client.retry = RetryPolicy(base_delay=0.05, budget=10)
    fault_proxy.script = ["drop", "drop"]
    assert (await client.whoami())["OrganizationId"] == defaults.ORGANIZATION_ID
    assert len(fault_proxy.seen) == 3
    await client.aclose()


async def test_dropped_connection_after_a_create_is_never_resent(connect, fault_proxy):
    client = connect().open_client()
    fault_proxy.script = ["drop", "ok"]
    with pytest.raises(TransientError, match="may or may not have been applied"):
        await client.create("accounts", {"name": "Ambiguous"})
    assert len(fault_proxy.requests("POST")) == 1
    await client.aclose()


async def test_dropped_create_only_upsert_is_never_resent(connect, fault_proxy):
    """Sent again, a create-only upsert that did land would fail 412 'already exists'."""
    client = connect().open_client()
    fault_proxy.script = ["drop", "ok"]
    with pytest.raises(TransientError, match="may or may not have been applied"):
        await client.upsert("accounts", {"accountnumber": "NEW-1"}, {"name": "Ambiguous"}, mode="create")
    assert len(fault_proxy.requests("PATCH")) == 1
    await client.aclose()


async def test_a_delete_whose_answer_was_lost_is_done_when_the_retry_finds_nothing(connect, fault_proxy):
    client = connect().open_client()
    client.retry = RetryPolicy(base_delay=0.05, budget=10)
    created = await client.create("accounts", {"name": "Deleted once"})
    fault_proxy.script = ["apply-drop"]  # deleted, but the 204 never arrives; the retry meets a 404
    await client.delete("accounts", created["id"])
    assert [s.action for s in fault_proxy.requests("DELETE")] == ["apply-drop", "forward"]
    with pytest.raises(DataverseError) as missing:  # a plain delete of a missing row still says so
        await client.delete("accounts", created["id"])
    assert missing.value.status == 404
    await client.aclose()


async def test_timeout_after_sending_an_action_is_never_resent(connect, fault_proxy):
    client = connect(timeoutSeconds=0.3).open_client()
    fault_proxy.script = ["stall:1", "ok"]
    with pytest.raises(TransientError, match="not sent again"):
        await client.execute("WinOpportunity", {"Status": 3})
    assert len(fault_proxy.requests("POST")) == 1
    await client.aclose()


async def test_timeout_on_a_read_is_retried(connect, fault_proxy):
    client = connect(timeoutSeconds=0.3).open_client()
    fault_proxy.script = ["stall:1"]
    assert (await client.whoami())["OrganizationId"] == defaults.ORGANIZATION_ID
    await client.aclose()


async def test_retries_can_be_turned_off(connect, fault_proxy):
    client = connect(maxRetries=0).open_client()
    fault_proxy.script = ["503"]
    with pytest.raises(TransientError):
        await client.whoami()
    assert len(fault_proxy.seen) == 1
    await client.aclose()


async def test_concurrency_stays_within_the_limit(connect, fault_proxy):
    client = connect(maxConcurrency=6).open_client()
    await client.whoami()  # token first, so all requests race for the Web API only
    fault_proxy.delay = 0.02
    await asyncio.gather(*(client.whoami() for _ in range(40)))
    assert fault_proxy.peak <= 6
    assert client.limiter.peak <= 6
    await client.aclose()


async def test_limiter_narrows_as_burst_budget_falls(connect, fault_proxy):
    client = connect(maxConcurrency=20).open_client()
    fault_proxy.extra_headers = {"x-ms-ratelimit-burst-remaining-xrm-requests": "5"}
    await client.whoami()
    assert client.limiter.limit == 1
    fault_proxy.delay = 0.01
    fault_proxy.peak = 0
    await asyncio.gather(*(client.whoami() for _ in range(10)))
    assert fault_proxy.peak == 1
    fault_proxy.extra_headers = {"x-ms-ratelimit-burst-remaining-xrm-requests": "5000"}
    await client.whoami()
    assert client.limiter.limit == 20
    await client.aclose()


async def test_shared_pause_holds_every_request():
    limiter = Limiter(4)
    limiter.pause(0.2)
    started = time.monotonic()
    async with limiter.slot():
        pass
    assert time.monotonic() - started >= 0.19


def test_retry_policy_rules():
    policy = RetryPolicy()
    assert policy.should_retry_status(429, idempotent=False)
    assert policy.should_retry_status(503, idempotent=False)
    assert not policy.should_retry_status(502, idempotent=False)
    assert policy.should_retry_status(504, idempotent=True)
    assert not policy.should_retry_status(500, idempotent=True)
    request = httpx.Request("POST", "https://x")
    assert policy.should_retry_error(httpx.ConnectError("refused", request=request), idempotent=False)
    assert not policy.should_retry_error(httpx.ReadTimeout("slow", request=request), idempotent=False)
    assert policy.should_retry_error(httpx.ReadTimeout("slow", request=request), idempotent=True)
    assert all(0 <= policy.backoff(n) <= policy.max_delay for n in range(12))


async def test_a_server_error_is_typed(connect, fault_proxy):
    client = connect().open_client()
    fault_proxy.script = ["500"]
    with pytest.raises(DataverseError) as caught:
        await client.whoami()
    assert caught.value.status == 500
    await client.aclose()


async def test_missing_application_user_is_diagnosed(connect, fault_proxy):
    connection = connect()
    fault_proxy.script = ["403:0x80040220"]
    with pytest.raises(PermissionDeniedError) as caught:
        await connection.test()
    assert "application user" in str(caught.value)
    assert connection.inputs.client_id in str(caught.value)


async def test_identifier_redaction_masks_host_and_guids(connect, fault_proxy):
    client = connect(redaction="identifiers").open_client()
    fault_proxy.script = ["400:0x80040203"]
    with pytest.raises(DataverseError) as caught:
        await client.retrieve("accounts", "7eb682f1-ca75-e511-80d4-00155d2a68d1")
    text = str(caught.value) + repr(caught.value) + str(caught.value.to_dict())
    assert "7eb682f1" not in text and "127.0.0.1" not in text
    assert "[id]" in text and caught.value.url.startswith("http://[org]")
    plain = connect().open_client()
    fault_proxy.script = ["400:0x80040203"]
    with pytest.raises(DataverseError) as caught:
        await plain.retrieve("accounts", "7eb682f1-ca75-e511-80d4-00155d2a68d1")
    assert "7eb682f1" in str(caught.value)  # ids are kept by default: users need them to find the row


async def test_connection_test_reports_an_unavailable_service_as_transient(connect, fault_proxy):
    connection = connect(maxRetries=0)
    fault_proxy.script = ["503", "503"]
    with pytest.raises(TransientError) as caught:
        await connection.test()
    assert caught.value.disposition == "transient"


# -- bulk writes through lost answers: exactly once --------------------------------------------


def _count(emulator, table: str, column: str, prefix: str) -> int:
    rows = emulator.app.state.store.execute(f"SELECT COUNT(*) AS n FROM {table} WHERE {column} LIKE ?", (f"{prefix}%",))
    return int(rows[0]["n"])


async def _warm(connection, entity_type: str) -> None:
    """Read the table's metadata once, so the fault script meets only the bulk requests."""
    await metadata_for(connection.open_client()).table(entity_type)


async def test_bulk_create_whose_answer_was_lost_is_resent_and_reconciled(connect, fault_proxy, emulator):
    connection = connect()
    await _warm(connection, "accounts")
    prefix = f"lost-create-{time.monotonic_ns()}-"
    rows = [{"name": f"{prefix}{i:03d}"} for i in range(250)]
    fault_proxy.script = ["apply-drop"]  # the first chunk lands; its answer never comes
    out = await invoke("dynamics365.bulk_create", {"entityType": "accounts", "rows": rows, "maxConcurrency": 1}, connection)
    assert out["nextChunk"] is None and out["written"] == 250 and out["failed"] == out["notWritten"] == 0
    assert out["resends"] == 1 and out["reconciled"] == 100
    assert _count(emulator, "account", "name", prefix) == 250  # none doubled, none lost
    assert len({r["id"] for r in out["results"]}) == 250


async def test_bulk_upsert_by_key_is_resent_after_a_lost_answer(connect, fault_proxy, emulator):
    connection = connect()
    await _warm(connection, "accounts")
    prefix = f"lost-upsert-{time.monotonic_ns()}-"
    rows = [{"accountnumber": f"{prefix}{i:03d}", "name": prefix} for i in range(150)]
    fault_proxy.script = ["forward", "apply-drop", "drop"]
    out = await invoke("dynamics365.bulk_upsert", {"entityType": "accounts", "rows": rows, "maxConcurrency": 1,
                                                   "alternateKeyColumns": ["accountnumber"]}, connection)
    assert out["nextChunk"] is None and out["written"] == 150 and out["resends"] == 2 and out["reconciled"] == 0
    assert _count(emulator, "account", "accountnumber", prefix) == 150


async def test_batch_change_set_of_upserts_is_resent_after_a_lost_answer(connect, fault_proxy, emulator):
    client = connect().open_client()
    prefix = f"lost-batch-{time.monotonic_ns()}-"
    operations = [BatchOperation("PATCH", f"accounts(accountnumber='{prefix}{i}')", body={"name": prefix}) for i in range(5)]
    fault_proxy.script = ["apply-drop"]
    results = await client.batch(operations, atomic=True)
    assert all(r.ok for r in results)
    assert _count(emulator, "account", "accountnumber", prefix) == 5
    assert [s.action for s in fault_proxy.seen] == ["apply-drop", "forward"]


async def test_batch_of_plain_creates_is_not_resent(connect, fault_proxy):
    client = connect().open_client()
    fault_proxy.script = ["drop"]
    with pytest.raises(TransientError, match="not sent again"):
        await client.batch([BatchOperation("POST", "accounts", body={"name": "once"})], atomic=True)


async def test_a_journal_resumes_an_interrupted_run_exactly(connect, fault_proxy, emulator, tmp_path):
    connection = connect()
    await _warm(connection, "accounts")
    prefix = f"journal-{time.monotonic_ns()}-"
    inputs = {"entityType": "accounts", "rows": [{"name": f"{prefix}{i:03d}"} for i in range(300)],
              "maxConcurrency": 1, "journalFile": str(tmp_path / "run.journal")}
    fault_proxy.script = ["forward", "apply-drop", "500"]  # chunk 1 lands unseen, its resend fails: the run stops
    first = await invoke("dynamics365.bulk_create", inputs, connection)
    assert first["confirmedChunks"] == [0] and first["nextChunk"] == 1
    assert first["written"] + first["failed"] + first["notWritten"] == first["total"] == 300
    assert _count(emulator, "account", "name", prefix) == 200  # chunk 1 is in Dataverse, unconfirmed
    second = await invoke("dynamics365.bulk_create", inputs, connection)  # same inputs: the journal resumes
    assert second["nextChunk"] is None and second["alreadyWritten"] == 100 and second["written"] == 300
    assert second["reconciled"] == 100 and second["runId"] == first["runId"]
    assert _count(emulator, "account", "name", prefix) == 300
    third = await invoke("dynamics365.bulk_create", inputs, connection)  # finished: nothing is sent again
    assert third["alreadyWritten"] == 300 and third["results"] == []
    assert _count(emulator, "account", "name", prefix) == 300


async def test_a_journal_of_another_run_is_refused(connect, emulator, tmp_path):
    connection = connect()
    journal = tmp_path / "run.journal"
    await invoke("dynamics365.bulk_create", {"entityType": "accounts", "rows": [{"name": f"journal-a-{time.monotonic_ns()}"}], "journalFile": str(journal)},
                 connection)
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.bulk_create", {"entityType": "accounts", "rows": [{"name": f"journal-b-{time.monotonic_ns()}"}],
                                                 "journalFile": str(journal)}, connection)
    assert caught.value.errors[0].pointer == "/journalFile"


async def test_run_batch_operations_of_upserts_is_resent_after_a_lost_answer(connect, fault_proxy, emulator):
    connection = connect()
    prefix = f"lost-action-{time.monotonic_ns()}-"
    actions = [{"collection": "accounts", "action": "upsert", "key": {"accountnumber": f"{prefix}{i}"}, "data": {"name": prefix}}
               for i in range(4)]
    # batch items resolve their tables through metadata: a first run fills the cache, so the fault
    # script meets only the $batch request
    await invoke("dynamics365.run_batch_operations", {"actions": actions[:1], "atomic": True}, connection)
    fault_proxy.seen.clear()
    fault_proxy.script = ["apply-drop"]
    out = await invoke("dynamics365.run_batch_operations", {"actions": actions, "atomic": True}, connection)
    seen = [(s.action, s.path) for s in fault_proxy.seen]
    assert out["succeeded"] == 4 and [a for a, _ in seen] == ["apply-drop", "forward"], seen
    assert _count(emulator, "account", "accountnumber", prefix) == 4


async def test_row_by_row_batch_whose_answer_was_lost_is_reconciled(connect, fault_proxy, emulator):
    connection = connect()
    await _warm(connection, "accounts")
    prefix = f"lost-rows-{time.monotonic_ns()}-"
    rows = [{"name": f"{prefix}{i}"} for i in range(5)]
    fault_proxy.script = ["400:0x80040203", "apply-drop"]  # the chunk fails, its row-by-row $batch lands unseen
    out = await invoke("dynamics365.bulk_create", {"entityType": "accounts", "rows": rows, "continueOnError": True},
                       connection)
    assert out["written"] == 5 and out["failed"] == 0 and out["reconciled"] == 5 and out["resends"] == 1
    assert _count(emulator, "account", "name", prefix) == 5
