"""CLI commands that talk to an org, run against the emulator as a user would."""

from __future__ import annotations

import json

import pytest

from d365_components.cli import main


@pytest.fixture
def connection_file(emulator, tmp_path):
    path = tmp_path / "connection.json"
    path.write_text(json.dumps({"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()}))
    return path


def test_test_connection_says_who_we_are(connection_file, capsys) -> None:
    main(["test-connection", "--connection", f"@{connection_file}"])
    assert json.loads(capsys.readouterr().out)["userId"] == "00000000-0000-4000-8000-0000000000a2"


def test_test_connection_diagnoses_a_wrong_secret(emulator, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs(clientSecret="wrong-secret-value")}))
    with pytest.raises(SystemExit) as info:
        main(["test-connection", "--connection", f"@{bad}"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "wrong-secret-value" not in err and "secret" in err.lower()


def test_poll_prints_events_and_keeps_the_cursor(emulator, connection_file, tmp_path, capsys) -> None:
    cursor = tmp_path / "cursor.json"
    args = ["poll", "dynamics365.changed_rows", "--input", '{"entityType": "contacts"}',
            "--connection", f"@{connection_file}", "--cursor", str(cursor)]
    main(args)
    capsys.readouterr()
    assert cursor.exists()
    main(["run", "dynamics365.create_entity", "--connection", f"@{connection_file}",
          "--input", '{"entityType": "contacts", "dynamicValues": {"lastname": "Polled"}}'])
    created = json.loads(capsys.readouterr().out)["id"]
    main(args)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["kind"], e["id"]) for e in events] == [("created", created)]
