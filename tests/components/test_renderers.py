"""Every input schema renders right in real renderers, in a real browser.

rjsf 6 (validator-ajv8 on Ajv2020 + ajv-formats) and JSON Forms 3 (vanilla renderers, given an
Ajv2020) render each definition's form in headless Chromium, with and without our UI schemas: no
"Unsupported field schema" or "No applicable renderer" box, no console error or warning, and the
example inputs submit with no validation error. Three screenshots land in tests/artifacts/.

Needs node, tests/js/node_modules (``npm ci``) and Debian's ``chromium``; skipped locally without
them, failed in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from d365_contract_corpus import definitions, example_inputs, refusals, sample

from d365_components.ui_schemas import ui_schemas
from d365_components.vocabulary import vocabulary_schema

TESTS = Path(__file__).resolve().parents[1]
JS = TESTS / "js"
ARTIFACTS = TESTS / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = [
    ("dynamics365.create_entity", "rjsf", True),
    ("dynamics365.query_entities", "jsonforms", True),
    ("dynamics365.raw_request", "rjsf", True),
]


def showcase(definition: Any) -> dict[str, Any]:
    """The example with every optional input that has an example added, while the library accepts it:
    what the screenshots show."""
    data = example_inputs(definition)
    for name, prop in definition.input_schema()["properties"].items():
        if name not in data and prop.get("examples"):
            tried = {**data, name: sample(prop)}
            if refusals(definition, tried) is None:
                data = tried
    return data


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = [
        what
        for what, present in (
            ("node", shutil.which("node") is not None),
            ("tests/js/node_modules (npm ci)", (JS / "node_modules" / "playwright-core").is_dir()),
            (CHROMIUM, Path(CHROMIUM).exists()),
        )
        if not present
    ]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"missing in CI: {', '.join(missing)}")
    if missing:
        pytest.skip(f"missing: {', '.join(missing)}")
    forms = [
        {"key": d.key, "title": d.label, "schema": d.input_schema(), "ui": ui_schemas(d.input_schema()),
         "example": example_inputs(d), "showcase": showcase(d)}
        for d in definitions()
    ]
    request = tmp_path_factory.mktemp("render") / "forms.json"
    request.write_text(json.dumps({"vocabulary": vocabulary_schema(), "forms": forms,
                                   "screenshots": [list(s) for s in SCREENSHOTS]}))
    done = subprocess.run(["node", str(JS / "render_check.mjs"), str(request), str(ARTIFACTS)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_form_renders_without_error_boxes(rendered: dict[str, Any]) -> None:
    boxes = [f"{r['key']} {r['renderer']} ui={r['withUi']}: {r['unsupported']} unsupported, {r['noRenderer']} no renderer"
             for r in rendered["results"] if r["unsupported"] or r["noRenderer"]]
    assert boxes == []
    assert len(rendered["results"]) == 4 * len(definitions())


def test_no_console_errors_or_warnings(rendered: dict[str, Any]) -> None:
    assert rendered["console"] == []


def test_every_example_submits_without_validation_errors(rendered: dict[str, Any]) -> None:
    refused = [f"{r['key']} {r['renderer']} ui={r['withUi']}: {r['errors']}" for r in rendered["results"] if r["errors"]]
    assert refused == []


def test_three_screenshots_are_kept(rendered: dict[str, Any]) -> None:
    assert len(rendered["screenshots"]) == len(SCREENSHOTS)
    assert all(Path(path).stat().st_size > 5000 for path in rendered["screenshots"])
