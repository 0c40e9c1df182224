"""The one-pass zip directory reader against ``zipfile`` (the oracle): same records, same bytes, and
``ZipUnsupported`` (never a different answer) for what it does not cover."""

from __future__ import annotations

import os
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscope.checkpoints.zip_records import ZipUnsupported, read_directory

NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)
RECORDS = st.lists(st.tuples(NAMES, st.binary(max_size=300), st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])),
                   min_size=1, max_size=12, unique_by=lambda r: r[0])


def _write_methods(path, records, *, comment=b"", force_zip64=False):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, method in records:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with archive.open(info, "w", force_zip64=force_zip64) as handle:
                handle.write(data)
        archive.comment = comment


def _assert_same_as_zipfile(path):
    directory = read_directory(path)
    with zipfile.ZipFile(path) as archive:
        expected = {i.filename: i for i in archive.infolist()}
        assert list(directory.records) == list(expected)
        for name, info in expected.items():
            record = directory.records[name]
            assert (record.method, record.compressed_size, record.size, record.offset, record.crc) == (
                info.compress_type, info.compress_size, info.file_size, info.header_offset, info.CRC)
            assert directory.read(name) == archive.read(name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS, comment=st.binary(max_size=40).filter(lambda c: b"PK\x05\x06" not in c),  # zipfile
       force_zip64=st.booleans())                                # itself cannot read an end signature in a comment
def test_records_and_bytes_equal_zipfile(tmp_path, records, comment, force_zip64):
    path = str(tmp_path / "a.zip")
    _write_methods(path, records, comment=comment, force_zip64=force_zip64)
    _assert_same_as_zipfile(path)


def test_torch_save_file_equals_zipfile(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "sd.pt")
    torch.save({f"layer{i}.weight": torch.zeros(i + 1) for i in range(50)}, path)
    _assert_same_as_zipfile(path)


def test_more_records_than_a_16_bit_count(tmp_path):
    """70,000 records: the end record's count overflows and zipfile writes the zip64 end record."""
    path = str(tmp_path / "many.zip")
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(70_000):
            archive.writestr(f"d/{i}", b"")
    _assert_same_as_zipfile(path)


def test_what_it_does_not_cover_is_refused(tmp_path):
    good = str(tmp_path / "good.zip")
    _write_methods(good, [("a", b"x" * 100, zipfile.ZIP_STORED), ("b", b"y" * 50, zipfile.ZIP_DEFLATED)])
    data = open(good, "rb").read()
    prefixed = str(tmp_path / "prefixed.zip")  # data before the archive (a self-extractor): zipfile's business
    with open(prefixed, "wb") as handle:
        handle.write(b"#!stub\n" + data)
    bz2 = str(tmp_path / "bz2.zip")
    _write_methods(bz2, [("a", b"x" * 100, zipfile.ZIP_BZIP2)])
    truncated = str(tmp_path / "truncated.zip")
    with open(truncated, "wb") as handle:
        handle.write(data[: len(data) // 2])
    corrupt = str(tmp_path / "corrupt.zip")  # a flipped byte inside a stored record: the CRC check catches it
    with open(corrupt, "wb") as handle:
        handle.write(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    with pytest.raises(ZipUnsupported):
        read_directory(prefixed).records
    with pytest.raises(ZipUnsupported):
        read_directory(bz2).read("a")
    with pytest.raises(ZipUnsupported):
        read_directory(truncated)
    with pytest.raises(ZipUnsupported, match="CRC"):
        read_directory(corrupt).read("a")
    with pytest.raises(ZipUnsupported):
        read_directory(str(tmp_path / "absent.zip"))
    not_zip = str(tmp_path / "text.zip")
    with open(not_zip, "w") as handle:
        handle.write("hello")
    with pytest.raises(ZipUnsupported):
        read_directory(not_zip)
    assert os.path.getsize(good) == len(data) and read_directory(good).read("b") == b"y" * 50
