"""Download helper against a local HTTP server on 127.0.0.1 (never the real network)."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from pathlib import Path

import pytest

from tests.http_files import FileServer
from vanseg.data.download import download, main
from vanseg.errors import DatasetError

ARCHIVE = "ADEChallengeData2016.zip"


@pytest.fixture(scope="module")
def archive(tmp_path_factory, make_ade_layout) -> bytes:
    """A zip of a small ADEChallengeData2016 folder (3 training, 2 validation pairs)."""
    base = tmp_path_factory.mktemp("zip_src")
    make_ade_layout(base / "ADEChallengeData2016", num_train=3, num_val=2)
    (base / "ADEChallengeData2016" / "objectInfo150.txt").write_text("extra file\n")
    zip_path = base / "ade.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(base.rglob("*")):
            if path != zip_path:
                zf.write(path, path.relative_to(base))
    return zip_path.read_bytes()


@pytest.fixture
def server(archive):
    srv = FileServer({ARCHIVE: archive})
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def cli(server, root: Path, *extra: str) -> int:
    sha256 = hashlib.sha256(server.files[ARCHIVE]).hexdigest()
    url = server.url(ARCHIVE)
    args = ["ade20k", "--root", str(root), "--url", url, "--checksum", f"sha256:{sha256}"]
    args += ["--train-count", "3", "--val-count", "2", "--no-progress", *extra]
    return main(args)


def test_download_unpack_and_verify(server, tmp_path, capsys):
    assert cli(server, tmp_path) == 0
    dataset = tmp_path / "ADEChallengeData2016"
    assert len(list((dataset / "images/training").glob("*.jpg"))) == 3
    assert len(list((dataset / "annotations/validation").glob("*.png"))) == 2
    assert not (tmp_path / "ADEChallengeData2016.zip").exists()  # removed after unpacking
    assert [p.name for p in tmp_path.iterdir()] == ["ADEChallengeData2016"]  # no temp leftovers
    assert f"data.root={dataset}" in capsys.readouterr().out
    assert server.ranges == [None]
    assert cli(server, tmp_path) == 0 and server.ranges == [None]  # present: nothing fetched


def test_partial_download_is_resumed_with_http_range(server, tmp_path):
    (tmp_path / "ADEChallengeData2016.zip.part").write_bytes(server.files[ARCHIVE][:1000])
    assert cli(server, tmp_path, "--keep-zip") == 0
    assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / "ADEChallengeData2016.zip").read_bytes() == server.files[ARCHIVE]


def test_interrupted_download_keeps_the_part_and_resumes(server, tmp_path):
    server.cut_after = 700
    dest = tmp_path / "a.zip"
    with pytest.raises(DatasetError, match="run the same command again"):
        download(server.url(ARCHIVE), dest, progress=False)
    assert (tmp_path / "a.zip.part").stat().st_size == 700
    sha256 = hashlib.sha256(server.files[ARCHIVE]).hexdigest()
    download(server.url(ARCHIVE), dest, f"sha256:{sha256}", progress=False)
    assert server.ranges == [None, "bytes=700-"]
    assert dest.read_bytes() == server.files[ARCHIVE]


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    (tmp_path / "x.zip.part").write_bytes(b"stale bytes")
    download(server.url(ARCHIVE), tmp_path / "x.zip", progress=False)
    assert (tmp_path / "x.zip").read_bytes() == server.files[ARCHIVE]


def test_complete_part_file_gets_416_and_is_accepted(server, tmp_path):
    (tmp_path / "y.zip.part").write_bytes(server.files[ARCHIVE])
    size = len(server.files[ARCHIVE])
    download(server.url(ARCHIVE), tmp_path / "y.zip", expected_size=size, progress=False)
    assert (tmp_path / "y.zip").read_bytes() == server.files[ARCHIVE]


def test_checksum_mismatch_deletes_the_file(server, tmp_path, capsys):
    args = ["ade20k", "--root", str(tmp_path), "--url", server.url(ARCHIVE), "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--checksum", "sha256:" + "0" * 64])
    assert exit_info.value.code == 2  # USER_ERROR_EXIT, as every tool
    err = capsys.readouterr().err
    assert err.startswith("python -m vanseg.data.download: error:") and "sha256" in err
    assert not (tmp_path / "ADEChallengeData2016.zip").exists()


def test_size_mismatch_is_reported(server, tmp_path):
    with pytest.raises(DatasetError, match="expected"):
        download(server.url(ARCHIVE), tmp_path / "z.zip", expected_size=123, progress=False)


def test_wrong_counts_fail_the_layout_check(server, tmp_path, capsys):
    args = ["ade20k", "--root", str(tmp_path), "--url", server.url(ARCHIVE), "--no-progress"]
    with pytest.raises(SystemExit, match="2"):
        main([*args, "--checksum", "none"])  # default counts: 20,210 / 2,000
    err = capsys.readouterr().err
    assert "training: 3 image/label pairs, expected 20210" in err
    assert "validation: 2 image/label pairs, expected 2000" in err


def test_unreachable_server(tmp_path):
    with pytest.raises(DatasetError, match="Cannot reach|failed"):
        download("http://127.0.0.1:9/none.zip", tmp_path / "n.zip", progress=False, timeout=2)
