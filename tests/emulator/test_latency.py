"""The realistic-latency option: its spec and how it counts the rows a request writes."""

from __future__ import annotations

import pytest

from d365_components.emulator.limits.latency import BodyMarkers, Latency


def test_spec_reads_per_request_and_per_row() -> None:
    assert Latency.parse("30ms,per-row=0.2ms") == Latency(0.03, 0.0002)
    assert Latency.parse("1s") == Latency(1.0, 0.0)
    assert Latency.parse("per-row=2ms") == Latency(0.0, 0.002)
    assert str(Latency(0.03, 0.0002)) == "30ms,per-row=0.2ms"


@pytest.mark.parametrize("spec", ["30", "fast", "30ms,per-page=1ms"])
def test_bad_spec_is_refused_by_name(spec: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        Latency.parse(spec)


def test_rows_counted_per_message() -> None:
    target = b'{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "A"}'
    body = b'{"Targets": [' + b",".join([target] * 3) + b"]}"
    markers = BodyMarkers()
    for start in range(0, len(body), 7):  # markers split across chunks are counted once
        markers.feed(body[start:start + 7])
    assert markers.rows("/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple") == 3
    assert markers.rows("/api/data/v9.2/accounts") == 1
    batch = BodyMarkers()
    batch.feed(b"--b\r\nContent-Type: application/http\r\n\r\nPOST accounts\r\n" * 4)
    assert batch.rows("/api/data/v9.2/$batch") == 4
