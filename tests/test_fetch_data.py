"""fetch_data end to end against HTTP servers on 127.0.0.1 serving small synthetic npz files."""

import hashlib
import http.server
import io
import json
import os
import re
import socket
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from experiments import fetch_data
from trqam_jax.data import provenance
from trqam_jax.data.errors import UnknownEnvironmentError
from trqam_jax.data.fetch import FetchError, fetch_dataset

NAME = "cube-double-play-v0"
TRAIN, VAL = f"{NAME}.npz", f"{NAME}-val.npz"


def npz_bytes(seed: int, rows: int) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    np.savez(buffer, observations=rng.normal(size=(rows, 8)), terminals=np.ones(rows))
    return buffer.getvalue()


FILES = {TRAIN: npz_bytes(0, 600), VAL: npz_bytes(1, 60)}


@dataclass
class Server:
    """One local server: the files it holds, how it misbehaves, and what it was asked."""

    files: dict
    url: str = ""
    truncate_to: int | None = None  # send only this many bytes of each body (full length header)
    ignore_range: bool = False  # answer Range requests with the whole file (200)
    requests: list = field(default_factory=list)  # (file, Range header or None, bytes sent)


class Handler(http.server.BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-` support (206 / 416), as static file servers answer."""

    def do_GET(self):
        state = self.server.state
        name = os.path.basename(self.path)
        asked = self.headers.get("Range")
        data = state.files.get(name)
        if data is None:
            state.requests.append((name, asked, 0))
            self.send_error(404)
            return
        start = 0
        if asked and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1])
            if start >= len(data):
                state.requests.append((name, asked, 0))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = body if state.truncate_to is None else body[: state.truncate_to]
        self.wfile.write(sent)  # HTTP/1.0: the connection closes after the body
        state.requests.append((name, asked, len(sent)))

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def serve():
    """serve(files, **misbehaviour) -> a running Server; every server stops after the test."""
    running = []

    def start(files, **kwargs) -> Server:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.state = Server(
            dict(files), url=f"http://127.0.0.1:{httpd.server_port}/ogbench", **kwargs
        )
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        running.append(httpd)
        return httpd.state

    yield start
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


def refused_url() -> str:
    """A base URL whose port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ogbench"


def record_of(directory) -> dict:
    with open(provenance.provenance_path(str(directory), NAME)) as f:
        return json.load(f)


def test_clean_download_writes_the_files_and_an_official_record(tmp_path, serve):
    server = serve(FILES)
    returned = fetch_dataset(NAME, str(tmp_path), sources=[server.url], progress=False)

    for name, data in FILES.items():
        assert (tmp_path / name).read_bytes() == data
        assert not (tmp_path / f"{name}.part").exists()
    assert [(name, asked) for name, asked, _ in server.requests] == [(TRAIN, None), (VAL, None)]
    record = record_of(tmp_path)
    assert record == returned and record["data_source"] == "official"
    assert [(f["file"], f["url"], f["size"], f["sha256"]) for f in record["files"]] == [
        (name, f"{server.url}/{name}", len(data), hashlib.sha256(data).hexdigest())
        for name, data in FILES.items()
    ]
    # The loader labels the directory official, and keeps the record as the download's.
    assert provenance.data_source_of(provenance.read_provenance(str(tmp_path), NAME)) == "official"


def test_resume_asks_only_for_the_rest(tmp_path, serve):
    server = serve(FILES)
    have = 1000
    (tmp_path / f"{TRAIN}.part").write_bytes(FILES[TRAIN][:have])

    fetch_dataset(NAME, str(tmp_path), sources=[server.url], progress=False)

    assert (tmp_path / TRAIN).read_bytes() == FILES[TRAIN]
    assert server.requests[0] == (TRAIN, f"bytes={have}-", len(FILES[TRAIN]) - have)


def test_a_server_without_range_support_restarts_the_file(tmp_path, serve):
    server = serve(FILES, ignore_range=True)
    (tmp_path / f"{TRAIN}.part").write_bytes(b"x" * 1000)  # not even the right bytes

    fetch_dataset(NAME, str(tmp_path), sources=[server.url], progress=False)

    assert (tmp_path / TRAIN).read_bytes() == FILES[TRAIN]


@pytest.mark.parametrize("failure", ["404", "refused", "html page"])
def test_a_failing_mirror_falls_back_to_the_next(tmp_path, serve, failure):
    if failure == "404":
        first = serve({}).url
    elif failure == "refused":
        first = refused_url()
    else:  # the right length, but an error page instead of the file
        first = serve({n: b"<html>" + b" " * (len(d) - 6) for n, d in FILES.items()}).url
    good = serve(FILES)

    fetch_dataset(NAME, str(tmp_path), sources=[first, good.url], progress=False)

    for name, data in FILES.items():
        assert (tmp_path / name).read_bytes() == data
    assert [f["url"] for f in record_of(tmp_path)["files"]] == [
        f"{good.url}/{name}" for name in FILES
    ]


def test_a_short_transfer_is_refused_and_resumed_later(tmp_path, serve):
    short = serve(FILES, truncate_to=500)
    with pytest.raises(FetchError, match=f"got 500 of {len(FILES[TRAIN])} bytes"):
        fetch_dataset(NAME, str(tmp_path), sources=[short.url], progress=False)
    assert not (tmp_path / TRAIN).exists()
    assert (tmp_path / f"{TRAIN}.part").read_bytes() == FILES[TRAIN][:500]

    good = serve(FILES)
    fetch_dataset(NAME, str(tmp_path), sources=[good.url], progress=False)
    assert (tmp_path / TRAIN).read_bytes() == FILES[TRAIN]
    assert good.requests[0] == (TRAIN, "bytes=500-", len(FILES[TRAIN]) - 500)


def test_a_known_checksum_is_enforced(tmp_path, serve):
    server = serve(FILES)
    with pytest.raises(FetchError, match="expected 0000"):
        fetch_dataset(
            NAME, str(tmp_path), sources=[server.url], sha256={TRAIN: "0" * 64}, progress=False
        )
    assert not (tmp_path / TRAIN).exists() and not (tmp_path / f"{TRAIN}.part").exists()
    assert (tmp_path / VAL).read_bytes() == FILES[VAL]  # the other file still arrives


def test_complete_files_are_kept_and_never_overwritten(tmp_path, serve):
    fetch_dataset(NAME, str(tmp_path), sources=[serve(FILES).url], progress=False)
    other = serve({name: npz_bytes(7, 10) for name in FILES})

    fetch_dataset(NAME, str(tmp_path), sources=[other.url], progress=False)
    assert other.requests == []  # checked against the record, not fetched again
    assert (tmp_path / TRAIN).read_bytes() == FILES[TRAIN]

    (tmp_path / VAL).write_bytes(npz_bytes(8, 60))  # same size, other bytes
    with pytest.raises(FetchError, match="expected"):
        fetch_dataset(NAME, str(tmp_path), sources=[other.url], progress=False)
    assert other.requests == [] and (tmp_path / VAL).read_bytes() == npz_bytes(8, 60)


def test_generated_data_is_not_mixed_with_official(tmp_path, serve):
    path = provenance.provenance_path(str(tmp_path), NAME)
    with open(path, "w") as f:
        json.dump({"data_source": "generated"}, f)
    with pytest.raises(FetchError, match="as generated"):
        fetch_dataset(NAME, str(tmp_path), sources=[serve(FILES).url], progress=False)


def test_all_sources_down_says_what_to_do_by_hand(tmp_path, serve, capsys):
    primary, mirror = refused_url(), serve({}).url
    argv = [f"--env={NAME}", f"--dataset_dir={tmp_path}", f"--official_url={primary}"]
    code = fetch_data.main([*argv, f"--mirrors={mirror}", "--no-progress"])

    err = capsys.readouterr().err
    assert code == 2
    for name in FILES:
        assert f"{primary}/{name}" in err and f"{mirror}/{name}" in err
        assert os.path.join(str(tmp_path), name) in err
    assert "Connection refused" in err and "404" in err
    assert "by hand" in err and "rerun" in err and "make_dataset" in err
    assert not os.path.exists(provenance.provenance_path(str(tmp_path), NAME))  # nothing arrived


def test_unknown_dataset_names_the_close_ones(tmp_path):
    with pytest.raises(UnknownEnvironmentError, match="cube-double-play-v0"):
        fetch_dataset("cube-dubble-play-v0", str(tmp_path), sources=[refused_url()])
