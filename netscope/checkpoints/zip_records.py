"""The records of a zip archive, read from its central directory in one pass (no torch, no ``zipfile``).

``zipfile.ZipFile`` builds a ``ZipInfo`` object per record: on a ``torch.save`` file of 100k tensors
(one record per storage) that alone costs 0.4 s, twice that when the file is opened twice. Listing a
checkpoint needs each record's name, method, sizes and offset, and the bytes of one or two small
records (``data.pkl``, ``byteorder``). Everything this reader does not cover (several disks, data
before the archive, encryption, a method other than stored/deflate, an inconsistent directory) raises
``ZipUnsupported``, and callers fall back to ``zipfile`` or ``torch.load``, which word the error.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Dict, NamedTuple

_END = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes + comment)
_END64_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator (20 bytes)
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record (56 bytes)
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header (46 bytes + name, extra, comment)
# the fields of it records need: signature, flags, method, crc, sizes, name/extra/comment lengths, offset
_CENTRAL_FIELDS = struct.Struct("<4s4x2H4x3L3H8xL")
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header (30 bytes + name, extra)
_MAX_COMMENT = 65535
_STORED, _DEFLATED = 0, 8


class ZipUnsupported(Exception):
    """The archive is not one this reader covers: use ``zipfile`` (or torch) instead."""


class ZipRecord(NamedTuple):
    method: int  # 0 stored, 8 deflate (zipfile's compress_type)
    compressed_size: int
    size: int  # uncompressed bytes (zipfile's file_size)
    offset: int  # of the local header (zipfile's header_offset)
    crc: int
    flags: int


_new_record = partial(tuple.__new__, ZipRecord)  # the NamedTuple without its Python-level __new__ (100k records)


@dataclass(frozen=True)
class ZipDirectory:
    """An archive's central directory: the raw bytes at once, the records parsed on first use."""

    path: str
    raw: bytes  # the central directory as stored: ``b"name" in raw`` tells cheaply whether a name can exist
    count: int  # records the end record announces

    @cached_property
    def records(self) -> Dict[str, ZipRecord]:
        """Name -> record in directory order (a repeated name: the later record wins, as in zipfile)."""
        raw, unpack, size = self.raw, _CENTRAL_FIELDS.unpack_from, _CENTRAL.size
        text = raw.decode("latin-1")  # names sliced from it as str: one object per name, not two
        records: Dict[str, ZipRecord] = {}
        pos = 0
        try:
            for _ in range(self.count):
                (signature, flags, method, crc, compressed, plain, name_len, extra_len, comment_len,
                 offset) = unpack(raw, pos)
                if signature != b"PK\x01\x02":
                    raise ZipUnsupported("bad central directory signature")
                start = pos + size
                name = text[start:start + name_len]
                if not name.isascii():  # ASCII reads the same in latin-1, cp437 and utf-8
                    name = raw[start:start + name_len].decode("utf-8" if flags & 0x800 else "cp437")
                if "\x00" in name:  # zipfile cuts a name at its first NUL
                    name = name.split("\x00", 1)[0]
                if compressed == 0xFFFFFFFF or plain == 0xFFFFFFFF or offset == 0xFFFFFFFF:
                    extra = raw[start + name_len:start + name_len + extra_len]
                    plain, compressed, offset = _zip64_sizes(extra, plain, compressed, offset)
                records[name] = _new_record((method, compressed, plain, offset, crc, flags))
                pos = start + name_len + extra_len + comment_len
        except (struct.error, UnicodeDecodeError) as exc:
            raise ZipUnsupported(f"central directory unreadable ({exc})") from None
        if pos != len(raw):
            raise ZipUnsupported("central directory size disagrees with its records")
        return records

    def read(self, name: str) -> bytes:
        """The uncompressed bytes of one record, checked against its CRC."""
        record = self.records[name]
        if record.flags & 0x1:
            raise ZipUnsupported(f"record {name} is encrypted")
        with open(self.path, "rb") as handle:
            handle.seek(record.offset)
            header = handle.read(_LOCAL.size)
            if len(header) != _LOCAL.size:
                raise ZipUnsupported(f"record {name}: local header past the end of the file")
            signature, *_, name_len, extra_len = _LOCAL.unpack(header)
            if signature != b"PK\x03\x04" or handle.read(name_len).decode(
                    "utf-8" if record.flags & 0x800 else "cp437", "replace") != name:
                raise ZipUnsupported(f"record {name}: local header does not match the directory")
            handle.seek(extra_len, os.SEEK_CUR)
            data = handle.read(record.compressed_size)
        if len(data) != record.compressed_size:
            raise ZipUnsupported(f"record {name} is truncated")
        if record.method == _DEFLATED:
            try:
                data = zlib.decompressobj(-15).decompress(data)
            except zlib.error as exc:
                raise ZipUnsupported(f"record {name} does not inflate ({exc})") from None
        elif record.method != _STORED:
            raise ZipUnsupported(f"record {name} uses compression method {record.method}")
        if len(data) != record.size or zlib.crc32(data) != record.crc:
            raise ZipUnsupported(f"record {name} fails its CRC check")
        return data


def _zip64_sizes(extra: bytes, plain: int, compressed: int, offset: int):
    """The 64-bit values of the zip64 extra field (id 1) for each 32-bit field saturated at 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, pos)
        if kind == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            try:
                if plain == 0xFFFFFFFF:
                    plain = values.pop(0)
                if compressed == 0xFFFFFFFF:
                    compressed = values.pop(0)
                if offset == 0xFFFFFFFF:
                    offset = values.pop(0)
            except IndexError:
                raise ZipUnsupported("zip64 extra field too short") from None
            return plain, compressed, offset
        pos += 4 + length
    raise ZipUnsupported("32-bit field saturated without a zip64 extra field")


def read_directory(path: str) -> ZipDirectory:
    """The central directory of the zip at ``path``; ``ZipUnsupported`` when this reader does not cover it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            tail_start = max(0, size - _END.size - _MAX_COMMENT - _END64_LOCATOR.size)
            handle.seek(tail_start)
            tail = handle.read()
            end = _end_record(tail)
            (_, disk, cd_disk, _, count, cd_size, cd_offset, _) = _END.unpack_from(tail, end)
            cd_end = tail_start + end  # where the directory must end when no zip64 record follows it
            locator = end - _END64_LOCATOR.size
            if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
                _, _, end64_offset, _ = _END64_LOCATOR.unpack_from(tail, locator)
                handle.seek(end64_offset)
                record = handle.read(_END64.size)
                if len(record) != _END64.size or record[:4] != b"PK\x06\x06":
                    raise ZipUnsupported("zip64 end record missing")
                (_, _, _, _, disk, cd_disk, _, count, cd_size, cd_offset) = _END64.unpack(record)
                cd_end = end64_offset
            if disk or cd_disk:
                raise ZipUnsupported("archive spans several disks")
            if cd_offset + cd_size != cd_end:
                raise ZipUnsupported("data before the archive, or a directory of the wrong size")
            handle.seek(cd_offset)
            raw = handle.read(cd_size)
    except OSError as exc:
        raise ZipUnsupported(f"unreadable ({exc})") from None
    if len(raw) != cd_size:
        raise ZipUnsupported("central directory truncated")
    return ZipDirectory(os.fspath(path), raw, count)


def _end_record(tail: bytes) -> int:
    """Position in ``tail`` of the end record whose comment runs exactly to the end of the file."""
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise ZipUnsupported("no end of central directory record")
        if pos + _END.size <= len(tail):
            comment_len = _END.unpack_from(tail, pos)[-1]
            if pos + _END.size + comment_len == len(tail):
                return pos
