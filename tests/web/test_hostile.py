"""A lab's server under hostile pages and careless input: every refusal is a 4xx (or a 503 that
says when to come back) with a sentence, and nothing is stored or queued by it."""

from __future__ import annotations

import re
import select
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

import server.storage.db
from server.config import load_settings
from server.storage.artifacts import PARTIAL
from tests.support.images import png_bytes, red_left_image
from tests.support.jobs import jobs, settings_for
from tests.support.web import CSRF, LabClient, serving, web_client

LAYER = "/runs/1/layers/1"


def client_for(data_dir: Path, **env: str) -> LabClient:
    return web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir), **env}))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` pixels and holds almost none: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


# ---- host names and where writes come from ---------------------------------------------------


def test_other_host_names_are_refused_as_dns_rebinding_would_send(analysed_dir):
    web = client_for(analysed_dir)
    rebound = {"Host": "rebind.example:8000", "Origin": "http://rebind.example:8000"}
    answer = web.get("/runs/1", headers={"Host": "rebind.example:8000"})
    assert answer.status_code == 400 and "NEURONSCOPE_ALLOWED_HOSTS" in answer.text
    upload = {"file": ("red.png", png_bytes(red_left_image()))}
    posted = web.post("/api/runs/1/decompositions", files=upload, headers=rebound)
    assert posted.status_code == 400 and not jobs(settings_for(analysed_dir))
    assert web.get("/runs/1", headers={"Host": "localhost:8000"}).status_code == 200
    named = client_for(analysed_dir, NEURONSCOPE_ALLOWED_HOSTS="lab.example.org")
    assert named.get("/runs/1", headers={"Host": "lab.example.org"}).status_code == 200


def test_cross_site_writes_are_refused_before_anything_is_read(analysed_dir):
    web = client_for(analysed_dir)
    upload = {"file": ("red.png", png_bytes(red_left_image()))}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        answer = web.post("/api/runs/1/decompositions", files=upload, headers=headers)
        assert answer.status_code == 403 and "another site" in answer.json()["detail"], headers
    assert not jobs(settings_for(analysed_dir))
    fine = web.post("/api/runs/1/decompositions", files=upload)  # curl sends none of these
    assert fine.status_code == 202


def test_a_form_post_needs_its_origin_and_the_pages_csrf_token(analysed_dir):
    web = client_for(analysed_dir)
    form = {"image_index": "0"}
    no_source = web.post("/runs/1/decompositions", data=form, headers={"Origin": ""})
    assert no_source.status_code == 403 and "neither its Origin nor its Referer" in no_source.text
    forged = web.post("/runs/1/decompositions", data={**form, "csrf": "guessed-value-123456"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert not jobs(settings_for(analysed_dir))
    referred = web.post(
        "/runs/1/decompositions",
        data=form,
        headers={"Origin": "", "Referer": "http://127.0.0.1/runs/1"},
        follow_redirects=False,
    )
    assert referred.status_code == 303 and len(jobs(settings_for(analysed_dir))) == 1


def test_every_page_refuses_framing_and_inline_scripts(client):
    for path in ("/", "/runs/1", LAYER, "/runs/1.json", "/artifacts/nope", "/no/such/page"):
        answer = client.get(path)
        assert answer.headers["x-frame-options"] == "DENY", path
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy, path
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = client.get("/runs/1").text
    assert "<script>" not in page and 'name="csrf"' in page
    assert client.cookies.get("neuronscope_csrf") == CSRF  # a page repeats the browser's cookie
    assert f'value="{CSRF}"' in page
    fresh = LabClient(client.app)
    fresh.cookies.clear()
    first = fresh.get("/runs/1")  # a browser without one gets one, SameSite=Strict
    assert "SameSite=Strict" in first.headers["set-cookie"]
    token = first.headers["set-cookie"].split("=", 1)[1].split(";", 1)[0]
    assert f'name="csrf" value="{token}"' in first.text


def test_reading_a_composition_queues_nothing(analysed_dir):
    """An <img> on any page can make a browser GET a URL: a GET must not start work."""
    web = client_for(analysed_dir)
    url = "/api/runs/1/layers/4/neurons/0/composition?source=1"
    assert web.get(url).status_code == 404
    assert not jobs(settings_for(analysed_dir))
    assert web.post(url).status_code == 202 and len(jobs(settings_for(analysed_dir))) == 1


# ---- ids and parameters ----------------------------------------------------------------------


def test_ids_are_ascii_digits_and_odd_keys_name_nothing(client):
    for path in (
        "/runs/%C2%B2",  # '²'.isdigit() is true; int('²') fails
        "/runs/%C2%B2.json",
        "/runs/%D9%A1",  # an Arabic-Indic one: int() reads it as 1
        "/decompositions/%C2%B2",
        f"{LAYER}/neurons/%C2%B2",
        "/artifacts/" + "a" * 256,  # a file name too long for the file system
        "/artifacts/..%2F..%2Fetc%2Fpasswd",
        "/runs.xml",
        "/runs/1.xml",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "Traceback" not in answer.text
    assert client.get("/runs/1").status_code == 200


def test_form_numbers_are_ascii_digits(analysed_dir):
    web = client_for(analysed_dir)
    answer = web.post("/runs/1/decompositions", data={"image_index": "²"})
    assert answer.status_code == 400 and "whole number" in answer.text
    sized = web.post("/models", data={"spec": "torchvision:resnet18", "input_size": "²²"})
    assert sized.status_code == 400 and "input size" in sized.text
    assert not jobs(settings_for(analysed_dir))


def test_boolean_filters_mean_what_they_say(client):
    every = client.get(f"{LAYER}.json?_size=100").json()["rows"]
    live = [row["channel"] for row in every if not row["dead"]]
    dead = [row["channel"] for row in every if row["dead"]]
    assert live and dead, "the red detector's layer has both"
    for value in ("0", "false", "False"):
        rows = client.get(f"{LAYER}.json?dead__eq={value}&_size=100").json()["rows"]
        assert [row["channel"] for row in rows] == live, value
    rows = client.get(f"{LAYER}.json?dead__eq=true&_size=100").json()["rows"]
    assert [row["channel"] for row in rows] == dead
    for query in ("dead__eq=maybe", "_dead=perhaps", "color__gt=%D9%A1", "_size=%D9%A1"):
        answer = client.get(f"{LAYER}.json?{query}")
        assert answer.status_code == 400 and "not a valid" in answer.json()["detail"], query


def test_repeated_parameters_are_bounded(client):
    repeated = "&".join(["_sort=color"] * 300)
    answer = client.get(f"{LAYER}?{repeated}")
    assert answer.status_code == 400 and len(answer.content) < 5000
    assert client.get(f"{LAYER}?{'&'.join(['_sort=color'] * 3)}").status_code == 200
    long = client.get(f"{LAYER}?color__gt=0&x={'y' * 9000}")
    assert long.status_code == 414


def test_a_csv_twin_only_where_a_page_is_a_table(analysed_dir):
    web = client_for(analysed_dir)
    web.post("/runs/1/decompositions", data={"image_index": "0"})
    assert web.get("/decompositions/1").status_code == 200
    answer = web.get("/decompositions/1.csv")
    assert answer.status_code == 404 and "try .json" in answer.text
    assert web.get(f"{LAYER}.csv").status_code == 200


# ---- uploads ---------------------------------------------------------------------------------


def test_a_bomb_is_refused_for_its_megapixels_from_its_header(analysed_dir):
    web = client_for(analysed_dir)
    for width, height in ((60000, 60000), (9000, 9000)):
        bomb = {"file": ("bomb.png", png_header(width, height))}
        answer = web.post("/api/runs/1/decompositions", files=bomb)
        assert answer.status_code == 413, answer.text
        assert "megapixels" in answer.json()["detail"]
        assert "limited to 40 megapixels" in answer.json()["detail"]
    assert not jobs(settings_for(analysed_dir))


def _exchange(url: str, head: bytes, chunks, wait: float = 5.0) -> tuple[int, str, int]:
    """Send ``head``, give the server half a second to answer it, then send ``chunks`` while
    it has not answered; (status, answer, body bytes sent). A server that reads the whole body
    first lets every chunk through."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=wait) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        connection.sendall(head)
        select.select([connection], [], [], 0.5)
        for chunk in chunks:
            if select.select([connection], [], [], 0)[0]:
                break
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        deadline = time.monotonic() + wait
        while not _complete(answer) and time.monotonic() < deadline:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.decode("latin-1"), sent


def _complete(answer: bytes) -> bool:
    """Whether ``answer`` holds a whole response: its head and Content-Length bytes of body."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return bool(separator) and (length is None or len(body) >= int(length[1]))


def _upload_head(path: str, boundary: str, length: int | None, extra: str = "") -> bytes:
    size = (
        f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    )
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{size}{extra}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()


def _file_part(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()


def test_uploads_are_bounded_while_they_stream(analysed_dir):
    limit = 200_000
    environ = {
        "NEURONSCOPE_DATA_DIR": str(analysed_dir),
        "NEURONSCOPE_MAX_UPLOAD_BYTES": str(limit),
    }
    boundary = "b0und"
    with serving(environ) as url:
        declared = _upload_head("/api/runs/1/decompositions", boundary, 200_000_000)
        status, answer, sent = _exchange(url, declared, [b"x" * 65536] * 3000)
        assert status == 413 and sent == 0 and "at most 195.3 KiB" in answer  # refused unread

        def chunked():
            yield b"%x\r\n%s\r\n" % (len(_file_part(boundary)), _file_part(boundary))
            while True:
                yield b"10000\r\n" + b"x" * 65536 + b"\r\n"

        head = _upload_head("/api/runs/1/decompositions", boundary, None)
        chunks = (chunk for chunk, _ in zip(chunked(), range(3000), strict=False))
        status, answer, sent = _exchange(url, head, chunks)
        assert status == 413, answer
        # Refused while streaming: what got through is the limit plus the two sockets' buffers
        # (a few MB on loopback), not the 200 MB that a server reading the whole body takes.
        assert sent < 16_000_000
        assert httpx.get(f"{url}/runs/1").status_code == 200  # and the server serves on
    assert not jobs(settings_for(analysed_dir))


def test_with_a_token_an_upload_is_refused_before_its_file_is_read(analysed_dir):
    environ = {"NEURONSCOPE_DATA_DIR": str(analysed_dir), "NEURONSCOPE_TOKEN": "secret"}
    boundary = "b0und"
    with serving(environ) as url:
        head = _upload_head("/api/runs/1/decompositions", boundary, 10_000_000)
        # Only the file part's header is sent, never its 10 MB: a server that read the body
        # before checking the token would wait for it, and this exchange would time out.
        status, answer, _sent = _exchange(url, head, [_file_part(boundary)], wait=3.0)
        assert status == 403 and "lab token" in answer
        token_first = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="token"\r\n\r\nwrong\r\n'
        ).encode()
        status, answer, _sent = _exchange(url, head, [token_first + _file_part(boundary)])
        assert status == 403
    web = client_for(analysed_dir, NEURONSCOPE_TOKEN="secret")
    upload = {"file": ("red.png", png_bytes(red_left_image()))}
    typed = web.post("/runs/1/decompositions", data={"token": "secret"}, files=upload)
    assert typed.status_code == 200 and "/decompositions/" in str(typed.url)
    bearer = {"Authorization": "Bearer secret"}
    assert web.post("/api/runs/1/decompositions", files=upload, headers=bearer).status_code == 202


# ---- load and leftovers ----------------------------------------------------------------------


def test_many_concurrent_readers_never_stall_the_server(web_data_dir):
    """More clients than threads and connections: they wait their turn, in threads, and every
    request is answered. (Handlers that waited for a connection on the event loop froze the
    server for the pool's 30 s timeout once the clients outnumbered its connections.)"""
    environ = {"NEURONSCOPE_DATA_DIR": str(web_data_dir), "NEURONSCOPE_WEB_THREADS": "2"}
    paths = [LAYER + "?_sort_desc=color", f"{LAYER}/neurons/0", "/jobs", f"{LAYER}.csv"]

    def reader(number: int) -> list[tuple[int, float]]:
        answers = []
        with httpx.Client(timeout=20) as http:
            for step in range(6):
                start = time.perf_counter()
                status = http.get(url + paths[(number + step) % len(paths)]).status_code
                answers.append((status, time.perf_counter() - start))
        return answers

    with serving(environ) as url, ThreadPoolExecutor(16) as pool:
        answers = [answer for part in pool.map(reader, range(16)) for answer in part]
    assert {status for status, _ in answers} == {200}
    assert max(seconds for _, seconds in answers) < 10


def test_no_free_connection_is_a_503_that_says_when_to_retry(web_data_dir, monkeypatch):
    monkeypatch.setattr(server.storage.db, "CHECKOUT_TIMEOUT", 0.2)
    web = client_for(web_data_dir, NEURONSCOPE_WEB_THREADS="1")
    engine = web.app.state.database.engine
    held = [engine.connect(), engine.connect()]  # the pool's one and its one overflow
    try:
        answer = web.get("/runs/1")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "busy" in answer.text
        assert web.get("/runs/1.json").json()["detail"].startswith("the server is busy")
    finally:
        for connection in held:
            connection.close()
    assert web.get("/runs/1").status_code == 200


def test_temporary_files_of_dead_writers_are_swept_at_start(analysed_dir):
    store = analysed_dir / "artifacts" / "ab"
    store.mkdir(parents=True, exist_ok=True)
    orphan = store / f"{PARTIAL}{socket.gethostname()}-999999999-x1"
    orphan.write_bytes(b"half an image")
    client_for(analysed_dir)
    assert not orphan.exists()


def test_a_page_waiting_for_a_job_says_when_no_worker_will_do_it(analysed_dir):
    web = client_for(analysed_dir)
    asked = web.post("/runs/1/decompositions", data={"image_index": "0"}, follow_redirects=False)
    page = web.get(asked.headers["location"]).text
    assert "queued" in page and "No worker is running" in page


@pytest.mark.parametrize("value", ["", "1"])
def test_the_web_thread_count_is_at_least_one(value):
    assert load_settings({"NEURONSCOPE_WEB_THREADS": value}).web_threads >= 1


def test_the_bound_address_and_the_operators_names_are_the_allowed_hosts():
    bound = load_settings({"NEURONSCOPE_BIND_HOST": "10.1.2.3"}).allowed_hosts
    assert "10.1.2.3" in bound and "127.0.0.1" in bound and "evil.example" not in bound
    everywhere = load_settings({"NEURONSCOPE_BIND_HOST": "0.0.0.0"}).allowed_hosts
    assert socket.gethostname().lower() in everywhere  # the machine's own name, not any name
    named = load_settings({"NEURONSCOPE_ALLOWED_HOSTS": "Lab.Example.org, [::2]"}).allowed_hosts
    assert {"lab.example.org", "::2"} <= set(named)
