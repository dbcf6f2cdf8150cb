"""Packaging: one import namespace, every package listed, nothing else shipped."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_folder_with_an_init_is_a_listed_package() -> None:
    config = _config()
    folders = {folder: package for package, folder in config["package-dir"].items()}
    expected = set()
    for folder, package in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            expected.add(".".join((package, *relative)))
    assert expected == set(config["packages"])


def test_wheel_holds_only_the_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    code = [n for n in names if ".dist-info/" not in n]
    assert code and all(n.startswith("d365_components/") for n in code)
    assert "d365_components/manifests/dynamics365.json" in names
    assert "d365_components/manifests/manifest.schema.json" in names
    assert not any(n.startswith(("tests/", "bench/")) or "/tests/" in n for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "d365 = d365_components.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
