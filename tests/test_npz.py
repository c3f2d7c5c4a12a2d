"""data.npz.read_npz against np.load on every kind of .npz numpy writes, and on broken files."""

import zipfile
import zlib

import numpy as np
import pytest

from data.episodes import encode_episode
from data.npz import read_npz

ARRAYS = {
    "frames": np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
    "empty": np.zeros((0, 7), np.float64),
    "scalar": np.array(3.5),
    "flags": np.array([True, False, True]),
    "big_endian": np.arange(4, dtype=">i4"),
}


def _bzip2(path):  # a compression read_npz leaves to np.load
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
        for key, array in ARRAYS.items():
            with zf.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array)


@pytest.mark.parametrize("write", [
    lambda path: np.savez(path, **ARRAYS),  # stored members
    lambda path: np.savez_compressed(path, **ARRAYS),  # deflated
    lambda path: path.write_bytes(encode_episode(ARRAYS)),  # ours: deflated, level 1, fixed dates
    _bzip2,
])
@pytest.mark.parametrize("writable", [True, False])
def test_same_arrays_as_np_load(tmp_path, write, writable):
    path = tmp_path / "a.npz"
    write(path)
    got = read_npz(path, writable=writable)
    with np.load(path, allow_pickle=False) as npz:
        assert list(got) == npz.files
        for key in npz.files:
            want = npz[key]
            assert got[key].dtype == want.dtype and got[key].shape == want.shape
            np.testing.assert_array_equal(got[key], want)
            assert got[key].flags.writeable == writable
    assert list(read_npz(path, keys=["flags", "absent", "frames"])) == ["flags", "frames"]


def test_corrupt_truncated_and_pickled_files_raise(tmp_path):
    good = tmp_path / "good.npz"
    good.write_bytes(encode_episode(ARRAYS))
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("frames.npy")
    data[info.header_offset + 60:info.header_offset + 80] = bytes(20)  # inside the deflated frames
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(bytes(data))
    with pytest.raises((zipfile.BadZipFile, zlib.error)):
        read_npz(flipped)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="objects"):
        read_npz(pickled)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:len(data) // 2])
    with pytest.raises(zipfile.BadZipFile):
        read_npz(truncated)
