"""Export zips come from a remote service: they are verified and unpacked without trusting their contents."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from cvtriton_core.adapters.export_download import safe_extract, verify_export_zip
from cvtriton_core.errors import StepFailed


def make_zip(path: Path, members: dict[str, bytes], *, link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


GOOD = {"model.onnx": b"onnx-bytes", "labels.txt": b"a\nb\n", "python/predict.py": b"print(1)\n"}


def test_extracts_into_place_and_replaces_an_old_export(tmp_path):
    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    zip_path = make_zip(tmp_path / "e.zip", GOOD)
    assert set(verify_export_zip(zip_path)) == set(GOOD)
    safe_extract(zip_path, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["labels.txt", "model.onnx", "python/predict.py"]
    assert not any(p.name.startswith(".export") for p in tmp_path.iterdir())     # no staging left behind


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "C:/evil.txt", "a\\..\\evil"])
def test_unsafe_paths_are_refused_and_nothing_is_written(tmp_path, name):
    zip_path = make_zip(tmp_path / "bad.zip", {**GOOD, name: b"x"})
    dest = tmp_path / "out" / "export"
    with pytest.raises(StepFailed, match="unsafe path"):
        safe_extract(zip_path, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_links_and_oversize_archives_are_refused(tmp_path):
    with pytest.raises(StepFailed, match="link"):
        safe_extract(make_zip(tmp_path / "l.zip", GOOD, link="labels2.txt"), tmp_path / "x")
    big = make_zip(tmp_path / "big.zip", {**GOOD, "pad.bin": b"\0" * 5000})
    with pytest.raises(StepFailed, match="would unpack to"):
        safe_extract(big, tmp_path / "y", max_bytes=4000)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_verify_refuses_non_zips_damaged_zips_and_missing_members(tmp_path):
    (tmp_path / "html.zip").write_text("<html>expired</html>")
    with pytest.raises(StepFailed, match="is not a zip file"):
        verify_export_zip(tmp_path / "html.zip")
    good = make_zip(tmp_path / "g.zip", {"model.onnx": b"m" * 4000, "labels.txt": b"a\n"})
    data = bytearray(good.read_bytes())
    offset = data.find(b"m" * 100)
    data[offset:offset + 4] = b"XXXX"                     # corrupt the stored member: CRC mismatch
    (tmp_path / "crc.zip").write_bytes(bytes(data))
    with pytest.raises(StepFailed, match="damaged"):
        verify_export_zip(tmp_path / "crc.zip")
    with pytest.raises(StepFailed, match="has no model.onnx"):
        verify_export_zip(make_zip(tmp_path / "m.zip", {"labels.txt": b"a"}))
