"""`stratos up --tls-cert/--tls-key` and `STRATOS_NATS_CA`: the embedded nats-server requires TLS, and a client that
trusts the CA (the services, the CLI, a joined server) connects while one that does not is refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import nats
import pytest

from stratos_shared.embedded import NatsServerProcess
from stratos_shared.settings import StratosSettings, nats_tls_context

pytestmark = [
    pytest.mark.nats,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made with the openssl commands the README gives."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ca = ["-x509", "-days", "2", "-subj", "/CN=stratos-ca", "-keyout", "ca.key", "-out", "ca.pem"]
    openssl("req", "-newkey", "rsa:2048", "-nodes", *ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "nats.key", "-out", "nats.csr", "-subj", "/CN=nats")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "nats.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "nats.pem", "-extfile", "san.ext",
    )  # fmt: skip
    return folder / "ca.pem", folder / "nats.pem", folder / "nats.key"


async def test_tls_server_accepts_only_clients_that_trust_its_ca(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    server = NatsServerProcess(store_dir=tmp_path / "js", tls_cert=cert, tls_key=key, log_file=tmp_path / "nats.log")
    server.start()
    try:
        assert server.url.startswith("tls://127.0.0.1:")
        settings = StratosSettings(nats_url=server.url, nats_ca=ca)  # what a service reads from STRATOS_NATS_CA
        nc = await nats.connect(settings.nats_url, tls=settings.nats_tls(), connect_timeout=3)
        assert nc.is_connected
        await nc.close()
        with pytest.raises(Exception, match=r"(?i)certificate"):  # the system store does not know this CA
            await nats.connect(server.url, tls=ssl.create_default_context(), allow_reconnect=False, connect_timeout=3)
        assert nats_tls_context(None) is None  # no CA set: plain NATS, as before
    finally:
        server.stop()
