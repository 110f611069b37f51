"""Online fetching against a loopback HTTP server serving archives built in tmp_path.

Covers the canonical layout and manifest, checksum failures, interrupted transfers, retries
and fallbacks, the no-network message, and zip/tar-slip refusal. No real network is used.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import encoded, random_image, zip_bytes
from PIL import Image

from ablation import data, download
from ablation.archives import safe_extract
from ablation.config import BENCHMARKS
from ablation.data import Source
from ablation.errors import ConfigError, DataError
from ablation.fetch import fetch
from ablation.images import read_image

# --------------------------------------------------------------------------- loopback server


@dataclass
class Route:
    body: bytes
    mode: str = "ok"  # ok | corrupt | truncate | truncate-nolength | 404 | 500 | drop


class Server:
    """A tiny HTTP server on 127.0.0.1 whose routes tests change between calls."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                hits[self.path] = hits.get(self.path, 0) + 1
                route = routes.get(self.path)
                if route is None or route.mode == "404":
                    self.send_error(404)
                    return
                if route.mode == "500":
                    self.send_error(500)
                    return
                if route.mode == "drop":  # close without any response
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = route.body
                if route.mode == "corrupt":
                    mid = len(body) // 2
                    body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if route.mode != "truncate-nolength":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if route.mode.startswith("truncate"):
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, name: str, body: bytes, mode: str = "ok") -> str:
        self.routes[f"/{name}"] = Route(body, mode)
        return f"{self.base}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _fast_and_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backoff sleeps, short timeouts, no proxy for loopback, no mirror from the env."""
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0,))
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("ABLATION_MIRROR", raising=False)
    # the fake archives below hold a few images: those are the datasets' counts here
    monkeypatch.setitem(data.EXPECTED_IMAGES, "t91", {".": 3})
    monkeypatch.setitem(data.EXPECTED_IMAGES, "benchmark",
                        {f"{name}/HR": 2 for name in BENCHMARKS})


# --------------------------------------------------------------------------- archive builders


def _image(seed: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Image.Image:
    return random_image(seed, size, mode)


_encoded = encoded
_zip = zip_bytes


def _tar(members: dict[str, bytes], mode: str = "w", links: dict[str, str] | None = None,
         hardlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.LNKTYPE, target
            tf.addfile(info)
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _sha(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _t91_zip() -> tuple[bytes, dict[str, np.ndarray]]:
    """A SRCNN_train.zip look-alike: Train/*.bmp (RGB and palette) plus a MATLAB file."""
    imgs = {"t1": _image(1), "t2": _image(2, (9, 7)), "tt3": _image(3).convert("P")}
    members = {f"Train/{k}.bmp": _encoded(v, "BMP") for k, v in imgs.items()}
    members["Train/generate_train.m"] = b"% not an image\n"
    return _zip(members), {k: np.asarray(v.convert("RGB")) for k, v in imgs.items()}


def _benchmark_tar() -> bytes:
    members: dict[str, bytes] = {}
    for i, set_name in enumerate(BENCHMARKS):
        for j in range(2):
            members[f"benchmark/{set_name}/HR/im{j}.png"] = _encoded(_image(10 * i + j), "PNG")
    members["benchmark/Set5/LR_bicubic/X2/im0x2.png"] = _encoded(_image(99, (6, 5)), "PNG")
    return _tar(members)


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _assert_clean(root: Path, canonical: Path) -> None:
    """After a failed fetch: no canonical folder, no archive in downloads/, no staging."""
    assert not canonical.exists()
    downloads = root / "downloads"
    leftovers = [p.name for p in downloads.iterdir()] if downloads.exists() else []
    assert leftovers == [], leftovers
    assert not list(root.glob(".fetch-*-*")), "staging folder left behind"


# --------------------------------------------------------------------------- success paths


def test_t91_zip_lands_in_canonical_layout_with_manifest(server: Server, tmp_path: Path) -> None:
    payload, pixels = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload)
    out = fetch("t91", tmp_path, sources={"t91": (Source(url, _sha(payload), len(payload)),)})

    dest = tmp_path / "train" / "T91"
    assert out == [dest]
    assert _listing(dest) == ["SHA256SUMS", "t1.png", "t2.png", "tt3.png"]
    for stem, expected in pixels.items():  # BMP -> PNG is lossless
        np.testing.assert_array_equal(read_image(dest / f"{stem}.png"), expected)
    files = data.verify_folder(dest, "ablation data fetch t91", full=True)
    assert [f.name for f in files] == ["t1.png", "t2.png", "tt3.png"]
    assert data.train_files("t91", tmp_path) == files
    assert (tmp_path / "downloads" / "SRCNN_train.zip").read_bytes() == payload
    assert not list(tmp_path.glob(".fetch-*-*"))


def test_benchmark_tar_keeps_hr_and_official_lr(server: Server, tmp_path: Path) -> None:
    payload = _benchmark_tar()
    url = server.serve("benchmark.tar", payload)
    fetch("benchmark", tmp_path, sources={"benchmark": (Source(url, _sha(payload)),)})

    root = tmp_path / "benchmark"
    manifest = data.read_manifest(root / data.MANIFEST)
    assert len(manifest) == 9 and "Set5/LR_bicubic/X2/im0x2.png" in manifest
    hr = data.benchmark_hr_files("Set5", tmp_path)
    assert [f.name for f in hr] == ["im0.png", "im1.png"]
    assert data.official_lr_file(hr[0], 2) == root / "Set5" / "LR_bicubic" / "X2" / "im0x2.png"
    assert data.official_lr_file(hr[1], 2) is None


def test_refetch_of_a_verified_dataset_downloads_nothing(server: Server, tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload)
    sources = {"t91": (Source(url, _sha(payload)),)}
    fetch("t91", tmp_path, sources=sources)
    manifest = tmp_path / "train" / "T91" / data.MANIFEST
    before = manifest.stat().st_mtime_ns
    (tmp_path / "downloads" / "SRCNN_train.zip").unlink()  # prove no download is needed

    fetch("t91", tmp_path, sources=sources)
    assert server.hits["/SRCNN_train.zip"] == 1
    assert manifest.stat().st_mtime_ns == before


def test_refetch_restores_a_deleted_file_from_the_cached_archive(server: Server,
                                                                 tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload)
    sources = {"t91": (Source(url, _sha(payload)),)}
    fetch("t91", tmp_path, sources=sources)
    dest = tmp_path / "train" / "T91"
    (dest / "t2.png").unlink()
    with pytest.raises(DataError, match="t2.png"):
        data.train_files("t91", tmp_path)

    fetch("t91", tmp_path, sources=sources)
    assert server.hits["/SRCNN_train.zip"] == 1  # the verified archive in downloads/ was reused
    assert len(data.verify_folder(dest, "fix", full=True)) == 3


def test_bsds_without_published_hash_checks_count_and_converts_jpeg(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.EXPECTED_IMAGES, "bsds200", {".": 3})
    members = {f"BSDS300/images/train/{i}.jpg": _encoded(_image(i), "JPEG") for i in (11, 12, 13)}
    members["BSDS300/images/test/99.jpg"] = _encoded(_image(99), "JPEG")
    payload = _tar(members, "w:gz")
    url = server.serve("BSDS300-images.tgz", payload)
    fetch("bsds200", tmp_path, sources={"bsds200": (Source(url, None),)})

    dest = tmp_path / "train" / "BSDS200"
    assert _listing(dest) == ["11.png", "12.png", "13.png", "SHA256SUMS"]
    decoded = np.asarray(Image.open(io.BytesIO(members["BSDS300/images/train/11.jpg"])))
    np.testing.assert_array_equal(read_image(dest / "11.png"), decoded)
    archive = tmp_path / "downloads" / "BSDS300-images.tgz"
    assert (archive.parent / "BSDS300-images.tgz.sha256").read_text().strip() == \
        hashlib.sha256(archive.read_bytes()).hexdigest()

    (dest / "12.png").unlink()  # repair: the verified archive is reused, not downloaded again
    fetch("bsds200", tmp_path, sources={"bsds200": (Source(url, None),)})
    assert server.hits["/BSDS300-images.tgz"] == 1
    assert len(data.verify_folder(dest, "fix", full=True)) == 3


def test_unverified_leftover_without_hash_is_downloaded_again(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.EXPECTED_IMAGES, "bsds200", {".": 2})
    members = {f"BSDS300/images/train/{i}.jpg": _encoded(_image(i), "JPEG") for i in (1, 2)}
    payload = _tar(members, "w:gz")
    url = server.serve("BSDS300-images.tgz", payload)
    leftover = tmp_path / "downloads" / "BSDS300-images.tgz"
    leftover.parent.mkdir()
    leftover.write_bytes(payload[:50])  # e.g. from a run killed mid-way: no .sha256 sidecar
    fetch("bsds200", tmp_path, sources={"bsds200": (Source(url, None),)})
    assert server.hits["/BSDS300-images.tgz"] == 1 and leftover.read_bytes() == payload


# --------------------------------------------------------------------------- failures


def test_corrupt_download_is_one_line_error_and_leaves_nothing(server: Server,
                                                               tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload, mode="corrupt")
    with pytest.raises(DataError) as err:
        fetch("t91", tmp_path, sources={"t91": (Source(url, _sha(payload)),)})
    msg = str(err.value)
    assert "\n" not in msg
    assert url in msg and "checksum mismatch" in msg and "ablation data fetch t91" in msg
    assert server.hits["/SRCNN_train.zip"] == download.ATTEMPTS  # retried
    _assert_clean(tmp_path, tmp_path / "train" / "T91")


def test_stale_bad_archive_in_downloads_is_not_left_looking_valid(server: Server,
                                                                  tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload, mode="corrupt")
    stale = tmp_path / "downloads" / "SRCNN_train.zip"
    stale.parent.mkdir()
    stale.write_bytes(payload[:100])
    with pytest.raises(DataError):
        fetch("t91", tmp_path, sources={"t91": (Source(url, _sha(payload)),)})
    assert not stale.exists()


@pytest.mark.parametrize("mode", ["truncate", "drop", "500"])
def test_interrupted_download_fails_then_rerun_succeeds(server: Server, tmp_path: Path,
                                                        mode: str) -> None:
    payload, _ = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload, mode=mode)
    sources = {"t91": (Source(url, _sha(payload)),)}
    with pytest.raises(DataError, match="SRCNN_train.zip") as err:
        fetch("t91", tmp_path, sources=sources)
    assert "\n" not in str(err.value)
    _assert_clean(tmp_path, tmp_path / "train" / "T91")

    server.serve("SRCNN_train.zip", payload)  # the server recovers
    fetch("t91", tmp_path, sources=sources)
    assert len(data.train_files("t91", tmp_path)) == 3


def test_truncated_body_without_length_or_hash_is_caught_and_discarded(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Content-Length and no published hash: only extraction / the count can tell."""
    monkeypatch.setitem(download.EXPECTED_IMAGES, "bsds200", {".": 40})
    members = {f"BSDS300/images/train/{i}.jpg": _encoded(_image(i, (40, 40)), "JPEG", quality=95)
               for i in range(40)}
    payload = _tar(members, "w:gz")
    url = server.serve("BSDS300-images.tgz", payload, mode="truncate-nolength")
    sources = {"bsds200": (Source(url, None),)}
    with pytest.raises(DataError, match="BSDS300-images.tgz"):
        fetch("bsds200", tmp_path, sources=sources)
    _assert_clean(tmp_path, tmp_path / "train" / "BSDS200")

    server.serve("BSDS300-images.tgz", payload)
    fetch("bsds200", tmp_path, sources=sources)
    assert len(data.train_files("bsds200", tmp_path)) == 40


def test_unknown_hash_wrong_size_or_count_is_refused(server: Server, tmp_path: Path) -> None:
    members = {f"BSDS300/images/train/{i}.jpg": _encoded(_image(i), "JPEG") for i in range(3)}
    payload = _tar(members, "w:gz")
    url = server.serve("BSDS300-images.tgz", payload)
    with pytest.raises(DataError, match=f"got {len(payload)} bytes, expected 12345"):
        fetch("bsds200", tmp_path,
                   sources={"bsds200": (Source(url, None, 12345),)})
    _assert_clean(tmp_path, tmp_path / "train" / "BSDS200")
    with pytest.raises(DataError, match="holds 3 images, expected 200"):
        fetch("bsds200", tmp_path, sources={"bsds200": (Source(url, None),)})
    _assert_clean(tmp_path, tmp_path / "train" / "BSDS200")


def test_failed_refetch_leaves_the_existing_folder_untouched(server: Server,
                                                             tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    url = server.serve("SRCNN_train.zip", payload)
    sources = {"t91": (Source(url, _sha(payload)),)}
    fetch("t91", tmp_path, sources=sources)
    dest = tmp_path / "train" / "T91"
    (dest / "t1.png").unlink()
    (tmp_path / "downloads" / "SRCNN_train.zip").unlink()
    before = _listing(dest)
    server.serve("SRCNN_train.zip", payload, mode="corrupt")
    with pytest.raises(DataError):
        fetch("t91", tmp_path, sources=sources)
    assert _listing(dest) == before  # old copy as it was, still reported as partial
    with pytest.raises(DataError, match="t1.png"):
        data.train_files("t91", tmp_path)


def test_first_source_failing_falls_back_to_the_next(server: Server, tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    dead = server.serve("official/SRCNN_train.zip", b"", mode="404")
    bad = server.serve("bad/SRCNN_train.zip", payload, mode="corrupt")
    good = server.serve("mirror/SRCNN_train.zip", payload)
    sources = {"t91": tuple(Source(u, _sha(payload)) for u in (dead, bad, good))}
    fetch("t91", tmp_path, sources=sources)
    assert server.hits == {"/official/SRCNN_train.zip": 1,  # a 404 is not retried
                           "/bad/SRCNN_train.zip": download.ATTEMPTS,
                           "/mirror/SRCNN_train.zip": 1}
    assert len(data.train_files("t91", tmp_path)) == 3


def test_every_source_failing_lists_each_url(server: Server, tmp_path: Path) -> None:
    payload, _ = _t91_zip()
    a = server.serve("a/SRCNN_train.zip", b"", mode="404")
    b = server.serve("b/SRCNN_train.zip", payload, mode="corrupt")
    with pytest.raises(DataError) as err:
        fetch("t91", tmp_path, sources={"t91": (Source(a, _sha(payload)),
                                                     Source(b, _sha(payload)))})
    msg = str(err.value)
    assert f"{a}: HTTP 404" in msg and f"{b}: checksum mismatch" in msg and "\n" not in msg


def test_no_sources_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no source provides it.*--mirror DIR"):
        fetch("t91", tmp_path, sources={"t91": ()})


def test_no_network_suggests_the_mirror(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/SRCNN_train.zip"
    with pytest.raises(DataError) as err:
        fetch("t91", tmp_path, sources={"t91": (Source(url, None),)})
    msg = str(err.value)
    assert "no network" in msg and "--mirror DIR" in msg and "ABLATION_MIRROR" in msg
    assert "\n" not in msg
    _assert_clean(tmp_path, tmp_path / "train" / "T91")


# --------------------------------------------------------------------------- DIV2K parts


def _div2k_archives(server: Server, valid_mode: str = "ok") -> tuple[Source, ...]:
    png = {n: _encoded(_image(n, (8, 6)), "PNG") for n in (1, 2, 801, 802)}
    lr2 = {n: _encoded(_image(1000 + n, (4, 3)), "PNG") for n in (1, 2, 801, 802)}
    lr3 = {n: _encoded(_image(2000 + n, (3, 2)), "PNG") for n in (1, 2)}
    train = _zip({f"DIV2K_train_HR/{n:04d}.png": png[n] for n in (1, 2)})
    valid = _zip({f"DIV2K_valid_HR/{n:04d}.png": png[n] for n in (801, 802)})
    x2 = _zip({f"DIV2K_train_LR_bicubic/X2/{n:04d}x2.png": lr2[n] for n in (1, 2)})
    x3 = _zip({f"DIV2K_train_LR_bicubic/X3/{n:04d}x3.png": lr3[n] for n in (1, 2)})
    whole = _tar({**{f"DIV2K/DIV2K_train_HR/{n:04d}.png": png[n] for n in png},
                  **{f"DIV2K/DIV2K_train_LR_bicubic/X2/{n:04d}x2.png": lr2[n] for n in lr2}})
    return (
        Source(server.serve("DIV2K_train_HR.zip", train), _sha(train)),
        Source(server.serve("DIV2K_valid_HR.zip", valid, mode=valid_mode), _sha(valid)),
        Source(server.serve("DIV2K_train_LR_bicubic_X2.zip", x2), _sha(x2)),
        Source(server.serve("DIV2K_train_LR_bicubic_X3.zip", x3), _sha(x3)),
        Source(server.serve("DIV2K.tar", whole), None),
    )


def test_div2k_valid_404_falls_back_to_the_single_tar(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.EXPECTED_IMAGES, "div2k", {
        "DIV2K_train_HR": 2, "DIV2K_valid_HR": 2, "DIV2K_train_LR_bicubic/X*": 2})
    sources = {"div2k": _div2k_archives(server, valid_mode="404")}
    fetch("div2k", tmp_path, lr_scales=(2,), sources=sources)

    root = tmp_path / "DIV2K"
    assert _listing(root) == [
        "DIV2K_train_HR/0001.png", "DIV2K_train_HR/0002.png",
        "DIV2K_train_LR_bicubic/X2/0001x2.png", "DIV2K_train_LR_bicubic/X2/0002x2.png",
        "DIV2K_valid_HR/0801.png", "DIV2K_valid_HR/0802.png", "SHA256SUMS"]
    assert server.hits["/DIV2K.tar"] == 1 and "/DIV2K_train_LR_bicubic_X3.zip" not in server.hits
    assert [f.name for f in data.train_files("div2k", tmp_path)] == ["0001.png", "0002.png"]
    assert [f.name for f in data.div2k_valid_files(tmp_path, 801, 802)] == ["0801.png",
                                                                            "0802.png"]
    assert data.has_div2k(tmp_path)
    data.verify_folder(root, "fix", full=True)


def test_div2k_adding_a_scale_downloads_only_that_part(server: Server, tmp_path: Path) -> None:
    sources = {"div2k": _div2k_archives(server)}
    fetch("div2k", tmp_path, sources=sources)
    assert set(server.hits) == {"/DIV2K_train_HR.zip", "/DIV2K_valid_HR.zip"}
    fetch("div2k", tmp_path, lr_scales=(3,), sources=sources)
    assert server.hits == {"/DIV2K_train_HR.zip": 1, "/DIV2K_valid_HR.zip": 1,
                           "/DIV2K_train_LR_bicubic_X3.zip": 1}
    entries = data.read_manifest(tmp_path / "DIV2K" / data.MANIFEST)
    assert sorted({e.rsplit("/", 1)[0] for e in entries}) == [
        "DIV2K_train_HR", "DIV2K_train_LR_bicubic/X3", "DIV2K_valid_HR"]


def test_div2k_rejects_an_unknown_lr_scale(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="2, 3, 4"):
        fetch("div2k", tmp_path, lr_scales=(5,), sources={"div2k": ()})


# --------------------------------------------------------------------------- zip / tar slip

SLIPS = {
    "zip ../": lambda: _zip({"Train/t1.bmp": b"x", "../evil": b"pwned"}),
    "zip absolute": lambda: _zip({"/tmp/abs_evil": b"pwned"}),
    "tar ../": lambda: _tar({"Train/../../evil": b"pwned"}),
    "tar absolute": lambda: _tar({"/tmp/abs_evil": b"pwned"}),
    "tar symlink out": lambda: _tar({}, links={"Train/link": "../../.."}),
    "tar symlink abs": lambda: _tar({}, links={"Train/link": "/etc"}),
    "tar through link": lambda: _tar({"a/b/l/../evil": b"pwned"}, links={"a/b/l": "../.."}),
    "tar hardlink out": lambda: _tar({}, hardlinks={"Train/h": "../evil"}),
}


@pytest.mark.parametrize("kind", sorted(SLIPS))
def test_safe_extract_refuses_escaping_members(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "a" / "evil.bin"
    archive.parent.mkdir()
    archive.write_bytes(SLIPS[kind]())
    dest = tmp_path / "a" / "dest" / "inner"
    before = _listing(tmp_path)
    with pytest.raises(DataError, match="unsafe member"):
        safe_extract(archive, dest)
    after = [p for p in _listing(tmp_path) if not p.startswith("a/dest/")]
    assert after == before and not Path("/tmp/abs_evil").exists()
    assert not dest.exists() or not any(dest.rglob("*"))  # checks ran before any write


def test_safe_extract_accepts_dot_members_and_inside_links(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar"
    archive.write_bytes(_tar({"./a/x.txt": b"1"}, links={"./a/l": "x.txt"}))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "a" / "x.txt").read_bytes() == b"1"


def test_safe_extract_truncated_archive_is_a_data_error(tmp_path: Path) -> None:
    payload = _tar({"a.bin": os.urandom(4096)}, "w:gz")
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match="cut.tgz"):
        safe_extract(archive, tmp_path / "out")


@pytest.mark.parametrize("kind", ["zip ../", "tar ../", "tar symlink out"])
def test_fetch_refuses_a_slipping_archive(server: Server, tmp_path: Path, kind: str) -> None:
    root = tmp_path / "data"
    payload = SLIPS[kind]()
    url = server.serve("SRCNN_train.zip", payload)
    with pytest.raises(DataError, match="unsafe member") as err:
        fetch("t91", root, sources={"t91": (Source(url, _sha(payload)),)})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "evil").exists() and not (root / "evil").exists()
    _assert_clean(root, root / "train" / "T91")


def test_a_second_concurrent_fetch_is_refused(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".fetch-t91.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match="another `ablation data fetch t91` is running"):
            fetch("t91", tmp_path, sources={"t91": ()})
