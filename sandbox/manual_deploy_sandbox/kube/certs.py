"""A throwaway CA and server certificate for 127.0.0.1, so a token-protected emulator speaks HTTPS.

client-go (helm, kubectl) only sends a kubeconfig's bearer token over TLS -- over plain http it
silently sends nothing and the apiserver answers 401. An emulator that checks tokens therefore has to
serve HTTPS, like EKS does. The key material is made by the `openssl` CLI (the project has no
crypto library), lives only in memory once loaded, and is valid for a week.

Kubeconfigs need the CA: `ca_for(url)` finds it for emulators running in this process, which lets
`write_kubeconfig` embed it without callers passing certificates around.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

DAYS = "7"
_OPENSSL_TIMEOUT = 30
_SERVER_EXTENSIONS = ("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
_registry: dict[str, bytes] = {}
_registry_lock = threading.Lock()


def server_context() -> tuple[ssl.SSLContext, bytes]:
    """A server SSLContext for 127.0.0.1 and the PEM of the CA that signed its certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("serving HTTPS (needed for bearer tokens: client-go sends none over http) "
                           "requires the openssl command; install it (apt-get install openssl)")
    with tempfile.TemporaryDirectory(prefix="kube-emulator-tls-") as scratch:
        work = Path(scratch)
        (work / "server.ext").write_text(_SERVER_EXTENSIONS, encoding="ascii")
        ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run(openssl, "req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS,
             "-subj", "/CN=kube-emulator-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=work)
        _run(openssl, "req", "-new", *ec_key, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-emulator", cwd=work)
        _run(openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", DAYS, "-extfile", "server.ext", cwd=work)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(work / "server.crt", work / "server.key")
        return context, (work / "ca.crt").read_bytes()


def register(url: str, ca_pem: bytes) -> None:
    """Remember which CA vouches for a running emulator's URL."""
    with _registry_lock:
        _registry[url] = ca_pem


def unregister(url: str) -> None:
    with _registry_lock:
        _registry.pop(url, None)


def ca_for(url: str) -> bytes | None:
    """The CA PEM of an emulator running in this process at `url`, if any."""
    with _registry_lock:
        return _registry.get(url.rstrip("/"))


def _run(*argv: str, cwd: Path) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=_OPENSSL_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {argv[1]} failed: {proc.stderr.strip()[-500:]}")
