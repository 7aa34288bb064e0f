"""A small HTTP(S) server on 127.0.0.1 serving scripts and files to aibx (and to the VM with --fetch-on-target).

Each path answers with a queue of responses (``serve("/a.sh", body, failures=[503, 503])`` answers 503 twice, then
the body), so tests can show retries; ``redirect(path, location)`` answers 302; every request is recorded.
``tls=True`` serves HTTPS with a certificate for 127.0.0.1 signed by a throw-away CA, whose file ``ca_file`` a
client must trust (``SSL_CERT_FILE``).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class _Route:
    body: bytes
    failures: deque[int] = field(default_factory=deque)
    location: str | None = None  # answer 302 with this Location instead


class ContentServer:
    def __init__(self, workdir: Path, *, tls: bool = False) -> None:
        self.routes: dict[str, _Route] = {}
        self.requests: list[str] = []  # request paths including the query
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append(self.path)
                    route = server.routes.get(urlsplit(self.path).path)
                    status = route.failures.popleft() if route and route.failures else (200 if route else 404)
                if route and route.location and status == 200:
                    status = 302
                body = route.body if route and status == 200 else f"status {status}\n".encode()
                self.send_response(status)
                if status == 302 and route and route.location:
                    self.send_header("Location", route.location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.ca_file: Path | None = None
        if tls:
            self.ca_file, context = _tls_context(workdir)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def serve(self, path: str, body: bytes, failures: list[int] | None = None) -> str:
        """Serve ``body`` at ``path`` (after answering with each status of ``failures``); returns the URL."""
        with self.lock:
            self.routes[path] = _Route(body, deque(failures or []))
        return self.url(path)

    def redirect(self, path: str, location: str) -> str:
        """Answer ``path`` with a 302 to ``location`` (any scheme); returns the URL."""
        with self.lock:
            self.routes[path] = _Route(b"", location=location)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> ContentServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tls_context(workdir: Path) -> tuple[Path, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aibx test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = workdir / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = workdir / "server.pem"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file)
    return ca_file, context
