"""The bulk journal file and the CLI's default journal (resume by running the same command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from d365_components.actions.journal import (
    DEFAULT_DIRECTORY,
    Journal,
    finish_default_journal,
    interrupted_message,
    with_default_journal,
)
from d365_components.errors import InputValidationError
from d365_components.registry import get_registry

SCHEMA = get_registry().get("dynamics365.bulk_create").input_schema()


def test_a_journal_is_saved_atomically_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "run.json"
    journal = Journal.open(str(path), "digest", None)
    journal.mark(3)
    journal.mark(0)
    again = Journal.open(str(path), "digest", None)
    assert again.done == {0, 3} and again.run_id == journal.run_id
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left
    with pytest.raises(InputValidationError) as caught:
        Journal.open(str(path), "digest", "0f8fad5b-d9cb-469f-a165-70867728950e")
    assert caught.value.errors[0].pointer == "/runId"


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(InputValidationError) as caught:
        Journal.open(str(path), "digest", None)
    assert caught.value.errors[0].pointer == "/journalFile"


def test_the_cli_default_journal_is_named_by_the_inputs() -> None:
    inputs = {"entityType": "accounts", "rows": [{"name": "a"}]}
    named, path, made = with_default_journal("dynamics365.bulk_create", inputs, SCHEMA)
    assert made and path is not None and path.parent == DEFAULT_DIRECTORY and named["journalFile"] == str(path)
    assert with_default_journal("dynamics365.bulk_create", dict(inputs), SCHEMA)[1] == path  # same command, same file
    assert with_default_journal("dynamics365.bulk_create", {**inputs, "rows": [{"name": "b"}]}, SCHEMA)[1] != path
    own = {**inputs, "journalFile": "mine.json"}
    assert with_default_journal("dynamics365.bulk_create", own, SCHEMA) == (own, Path("mine.json"), False)
    who = get_registry().get("dynamics365.get_current_user").input_schema()
    assert with_default_journal("dynamics365.get_current_user", {}, who) == ({}, None, False)


def test_a_finished_default_journal_is_removed_and_a_named_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    path.write_text("{}")
    finish_default_journal(path, True, {"nextChunk": 2})
    assert path.exists()
    finish_default_journal(path, False, {"nextChunk": None})
    assert path.exists()
    finish_default_journal(path, True, {"nextChunk": None})
    assert not path.exists()


def test_the_interrupt_message_holds_the_command() -> None:
    text = interrupted_message(Path("j.json"), ["run", "dynamics365.bulk_create", "--input", "@rows file.json"])
    assert "j.json" in text and "d365 run dynamics365.bulk_create --input '@rows file.json'" in text
