"""Reading .npz members with one read and one inflate each: the frame loader's inner loop.

np.load goes through zipfile's stream: 256 KB reads, inflated piecewise, each piece copied into the
array. Inflating a member whole, straight from its bytes, is about 8 % faster (the inflate itself is
the rest, ~370 MB/s a core), and the frame loader can then copy frames from the inflated bytes to their
shuffled places without an intermediate array. Anything this does not handle (another compression,
encryption) goes to np.load; the CRC is checked as zipfile does.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_MAX_NPY_HEADER = 65536


def read_npz(path: str | Path, keys: Sequence[str] | None = None, writable: bool = True) -> dict[str, np.ndarray]:
    """Arrays of the .npz at `path`, as np.load(allow_pickle=False) gives them: all members, or those of
    `keys` that it has (only those are read from disk).

    writable=False returns read-only arrays over the inflated bytes (one copy fewer).
    Raises zipfile.BadZipFile, zlib.error, ValueError, EOFError or OSError on a bad file.
    """
    with open(path, "rb") as file:
        with zipfile.ZipFile(file) as zf:  # reads the central directory only
            members = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
            wanted = list(members) if keys is None else [k for k in keys if k in members]
            if any(members[k].compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
                   or members[k].flag_bits & 0x1 for k in wanted):
                file.seek(0)
                with np.load(file, allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in wanted}
                for array in arrays.values():
                    array.flags.writeable = writable
                return arrays
        return {k: _member_array(file, members[k], writable) for k in wanted}


def _member_array(file: BinaryIO, info: zipfile.ZipInfo, writable: bool) -> np.ndarray:
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size:
        raise EOFError(f"member {info.filename!r} is cut short")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != _LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(f"bad local header for member {info.filename!r}")
    file.seek(name_length + extra_length, 1)
    stored = file.read(info.compress_size)
    payload = (zlib.decompress(stored, -15, info.file_size) if info.compress_type == zipfile.ZIP_DEFLATED
               else stored)
    if len(payload) != info.file_size or zlib.crc32(payload) != info.CRC:
        raise zipfile.BadZipFile(f"bad CRC-32 or size for member {info.filename!r}")
    return _npy_array(memoryview(payload), info.filename, writable)


def _npy_array(npy: memoryview, name: str, writable: bool) -> np.ndarray:
    header = io.BytesIO(npy[:_MAX_NPY_HEADER])
    version = np.lib.format.read_magic(header)
    shape, fortran_order, dtype = (np.lib.format.read_array_header_1_0(header) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(header))
    if dtype.hasobject:
        raise ValueError(f"member {name!r} holds Python objects (pickles are not loaded)")
    array = np.frombuffer(npy, dtype, count=int(np.prod(shape, dtype=np.int64)), offset=header.tell())
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    return array.copy(order="K") if writable else array
