"""The emulator runs as a real server: it starts, serves verified TLS (or plain http), and stops."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from d365_components.emulator.server import Emulator, describe


def test_serves_https_that_verifies_against_its_ca_bundle(emulator):
    assert emulator.org_url.startswith("https://127.0.0.1:")
    response = httpx.get(f"{emulator.authority}/v2.0/.well-known/openid-configuration", verify=emulator.ssl_context)
    assert response.status_code == 200
    assert response.json()["token_endpoint"] == emulator.token_url


def test_certificate_names_localhost_too(emulator):
    url = emulator.org_url.replace("127.0.0.1", "localhost")
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    response = httpx.get(f"{url}/{emulator.tenant_id}/discovery/v2.0/keys", verify=context)
    assert response.status_code == 200


def test_system_trust_store_rejects_the_emulator(emulator):
    with pytest.raises(httpx.ConnectError):
        httpx.get(emulator.org_url + "/", verify=ssl.create_default_context())


async def test_api_fixture_is_authenticated(api, emulator):
    response = await api.get("WhoAmI")
    assert response.status_code == 200, response.text
    assert response.json()["UserId"]


def test_plain_http_mode(fresh_emulator):
    emulator = fresh_emulator(tls=False)
    assert emulator.org_url.startswith("http://") and emulator.ca_bundle is None
    assert "caBundle" not in emulator.connection_inputs()
    response = httpx.get(f"{emulator.api_url}/WhoAmI", headers={"Authorization": f"Bearer {emulator.get_token()}"})
    assert response.status_code == 200


def test_stop_frees_the_port():
    emulator = Emulator(seed=None)
    with emulator:
        assert emulator.running
        port = emulator.port
    assert not emulator.running
    assert not _listening(port), "the port still accepts connections after stop()"


def test_two_emulators_run_side_by_side(fresh_emulator, emulator):
    other = fresh_emulator(seed=None)
    assert other.port != emulator.port
    token = other.get_token()
    assert emulator.identity.sign({"x": 1}) != token
    # A token from one emulator is not valid on the other: each signs with its own key.
    response = httpx.get(f"{emulator.api_url}/WhoAmI", headers={"Authorization": f"Bearer {token}"},
                         verify=emulator.ssl_context)
    assert response.status_code == 401


def test_connection_inputs_and_description(emulator):
    inputs = emulator.connection_inputs(clientId="other")
    assert inputs["webApiUrl"] == emulator.org_url
    assert inputs["tokenUrl"] == emulator.token_url
    assert inputs["caBundle"] == emulator.ca_bundle
    assert inputs["clientId"] == "other"
    text = describe(emulator)
    assert emulator.api_url in text and "curl --cacert" in text
    assert emulator.client_secret not in repr(emulator) and emulator.client_secret not in repr(emulator.identity)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False



def test_standalone_ca_is_reused_across_runs(tmp_path):
    from d365_components.emulator.tls import make_certificates

    first = make_certificates(tmp_path)
    second = make_certificates(tmp_path)
    assert first.ca_bundle.read_bytes() == second.ca_bundle.read_bytes()
    assert oct(first.keyfile.stat().st_mode & 0o777) == "0o600"


def test_run_standalone_prints_how_to_connect_and_stops_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    script = "from d365_components.emulator.server import run_standalone; run_standalone(port=0, seed=None)"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.strip().startswith("curl"):
                break
        details = dict(ln.strip().split(":", 1) for ln in lines if ":" in ln and ln.startswith("  ") and "curl" not in ln)
        details = {k.strip(): v.strip().split()[0] for k, v in details.items()}
        assert details["CA bundle"].startswith(str(tmp_path))
        token = httpx.post(details["Token URL"], verify=ssl.create_default_context(cafile=details["CA bundle"]), data={
            "grant_type": "client_credentials", "client_id": details["Client id"],
            "client_secret": details["Client secret"], "scope": details["Org URL"] + "/.default"})
        assert token.status_code == 200
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=15)
        assert "Emulator stopped." in out and process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- fault injection ------------------------------------------------------------------------------

def test_fault_spec_parsing():
    from d365_components.emulator.limits.faults import Faults

    faults = Faults.parse("429=0.1, 503=0.05,drop=0.01,latency=20ms,retry_after=3,seed=7")
    assert faults.statuses == {429: 0.1, 503: 0.05}
    assert (faults.drop, faults.latency, faults.retry_after, faults.seed) == (0.01, 0.02, 3, 7)
    for bad, message in [("418=0.1", "unknown entry '418'"), ("429=2", "'429=2' is not valid"),
                         ("latency=fast", "not valid"), ("429=0.7,503=0.7", "more than 1")]:
        with pytest.raises(ValueError, match=message):
            Faults.parse(bad)


def test_throttling_and_server_errors_hit_the_web_api_only(fresh_emulator):
    emulator = fresh_emulator(seed=None, faults="429=1,retry_after=7")
    token = emulator.get_token()          # the identity provider is never disturbed
    response = httpx.get(f"{emulator.api_url}/WhoAmI", headers={"Authorization": f"Bearer {token}"},
                         verify=emulator.ssl_context)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "0x80072322"

    unavailable = fresh_emulator(seed=None, faults="503=1")
    assert httpx.get(f"{unavailable.api_url}/WhoAmI", verify=unavailable.ssl_context).status_code == 503


def test_seeded_faults_repeat_and_dropped_responses_cut_the_connection(fresh_emulator):
    def statuses(emulator):
        out = []
        with httpx.Client(verify=emulator.ssl_context,
                          headers={"Authorization": f"Bearer {emulator.get_token()}"}) as client:
            for _ in range(20):
                try:
                    out.append(client.get(f"{emulator.api_url}/WhoAmI").status_code)
                except httpx.RemoteProtocolError:
                    out.append("dropped")
        return out

    first = statuses(fresh_emulator(seed=None, faults="429=0.3,drop=0.3,seed=3"))
    second = statuses(fresh_emulator(seed=None, faults="429=0.3,drop=0.3,seed=3"))
    assert first == second
    assert {200, 429, "dropped"} <= set(first)


def test_connection_file_is_private_and_usable(emulator, tmp_path) -> None:
    import json
    import stat

    from d365_components.emulator.server import write_connection_file
    from d365_components.runtime import invoke_sync

    path = write_connection_file(emulator, tmp_path / "sub" / "connection.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(path.read_text())
    assert invoke_sync("dynamics365.get_current_user", {}, config)["userId"]
