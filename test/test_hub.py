"""The hub probe: one real request with a short timeout, never just a TCP connect; no probe for local files."""
import http.server
import socket
import threading
import time

import pytest

import huggingface_hub.constants as hf
from textregion_ros.config import preset
from textregion_ros.files.hub import hub_reachable, uses_hub


def _serve(handler):
    """A server on 127.0.0.1 that runs ``handler(conn)`` for every connection -> its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def _garbage(conn):
    conn.recv(1024)
    conn.sendall(b"\x15\x03\x01\x00\x02\x02\x28 not a TLS server\r\n")  # a TLS alert, then junk
    conn.close()


def _silent(conn):
    time.sleep(10)  # accepts TCP and never answers (a proxy that black-holes the hub)
    conn.close()


@pytest.mark.parametrize("handler", [_garbage, _silent], ids=["tls_fails", "no_answer"])
def test_a_hub_that_accepts_tcp_but_does_not_answer_is_unreachable_quickly(monkeypatch, handler):
    srv = _serve(handler)
    try:
        monkeypatch.setattr(hf, "ENDPOINT", f"https://127.0.0.1:{srv.getsockname()[1]}")
        t0 = time.monotonic()
        assert not hub_reachable(timeout_s=1.0)
        assert time.monotonic() - t0 < 3.0
    finally:
        srv.close()


def test_a_hub_that_answers_with_any_status_is_reachable(monkeypatch):
    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(401)  # what the real hub says to an anonymous whoami
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(hf, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert hub_reachable(timeout_s=2.0)
    finally:
        server.shutdown()


def test_no_probe_when_every_weight_is_a_local_file_or_random(tmp_path):
    enc, sam = tmp_path / "clip.pt", tmp_path / "sam2.pt"
    enc.write_bytes(b"x")
    sam.write_bytes(b"x")
    assert not uses_hub(preset("cpu-lite", encoder_weights=str(enc), sam2_weights=str(sam)))
    assert not uses_hub(preset("cpu-lite", random_weights=True))
    assert not uses_hub(preset("cpu-lite", encoder_weights=str(enc), mask_source="superpixels"))
    assert uses_hub(preset("cpu-lite", encoder_weights=str(enc)))  # SAM2 from its hub id
    assert uses_hub(preset("cpu-lite", sam2_weights=str(sam)))  # the encoder's tag
