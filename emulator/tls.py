"""Certificates for the emulator's HTTPS: msal refuses plain http, so the emulator needs TLS.

A private CA (trustme) signs a server certificate for 127.0.0.1, localhost and ::1. Clients trust
the exported CA bundle, never the system store. Tests use a throwaway directory per process; the
standalone emulator keeps its CA under the user cache directory so that users can trust it once.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files uvicorn serves with and clients verify against."""

    ca_bundle: Path
    certfile: Path
    keyfile: Path


def make_certificates(directory: Path | str | None = None) -> Certificates:
    """Write a server certificate (and its CA, reused when already in `directory`)."""
    if directory is None:
        return _process_certificates()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = _load_or_create_ca(directory)
    return _issue(ca, directory)


def user_cache_dir() -> Path:
    """Where the standalone emulator keeps its CA, so a trusted bundle stays valid across runs."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "d365-components" / "emulator"


@functools.cache
def _process_certificates() -> Certificates:
    directory = Path(tempfile.mkdtemp(prefix="d365-emulator-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return _issue(trustme.CA(organization_name="d365-components emulator"), directory)


def _load_or_create_ca(directory: Path) -> trustme.CA:
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    if cert.exists() and key.exists():
        try:
            return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
        except ValueError:
            pass  # unreadable leftovers: replace them below
    ca = trustme.CA(organization_name="d365-components emulator")
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return ca


def _issue(ca: trustme.CA, directory: Path) -> Certificates:
    leaf = ca.issue_cert(*SERVER_NAMES, common_name="d365-components emulator")
    paths = Certificates(
        ca_bundle=directory / "ca.pem",
        certfile=directory / "server.pem",
        keyfile=directory / "server-key.pem",
    )
    ca.cert_pem.write_to_path(str(paths.ca_bundle))
    with open(paths.certfile, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(paths.keyfile))
    paths.keyfile.chmod(0o600)
    return paths
