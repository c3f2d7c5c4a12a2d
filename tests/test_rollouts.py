"""The rollout format and reader: validation with clear errors, streaming with bounded memory."""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from common.errors import DataError
from data.episodes import load_episode
from data.loader import frame_batches
from data.rollouts import ROLLOUT_SCHEMA, RolloutFolder, episode_path, save_rollout


def fake_episode(length, seed=0, action_dim=1):
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (length, action_dim)).astype(np.float32),
        "reward": np.ones(length, np.float32),
        "done": np.arange(length) == length - 1,
    }


def write_folder(folder, lengths):
    folder.mkdir(exist_ok=True)
    for i, n in enumerate(lengths):
        save_rollout(episode_path(folder, i), **fake_episode(n, seed=i))
    return folder


def test_roundtrip_is_a_plain_npz(tmp_path):
    ep = fake_episode(7)
    save_rollout(tmp_path / "e.npz", **ep)
    with np.load(tmp_path / "e.npz", allow_pickle=False) as npz:
        for key in ep:
            np.testing.assert_array_equal(npz[key], ep[key])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("reward"), "missing keys \\['reward'\\]"),
    (lambda e: e.update(obs=e["obs"].astype(np.float32)), "'obs' has dtype float32"),
    (lambda e: e.update(obs=e["obs"][:, :32]), "'obs' has shape"),
    (lambda e: e.update(done=e["done"][:-1]), "'done' has 6 steps"),
])
def test_bad_contents_name_file_and_problem(tmp_path, change, message):
    ep = fake_episode(7)
    change(ep)
    path = tmp_path / "bad.npz"
    np.savez(path, **ep)
    with pytest.raises(DataError, match=message) as info:
        load_episode(path, ROLLOUT_SCHEMA)
    assert str(path) in str(info.value)


def test_corrupt_truncated_and_pickled_files(tmp_path):
    good = tmp_path / "good.npz"
    save_rollout(good, **fake_episode(20))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obs=np.array([{"a": 1}], dtype=object), action=np.zeros((1, 1), np.float32),
             reward=np.zeros(1, np.float32), done=np.zeros(1, bool))
    for path in (truncated, garbage, pickled):
        with pytest.raises(DataError, match="corrupt or truncated") as info:
            load_episode(path, ROLLOUT_SCHEMA)
        assert str(path) in str(info.value)
    # a corrupted member inside an intact zip directory
    flipped = tmp_path / "flipped.npz"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("obs.npy")
    middle = info.header_offset + 100 + info.compress_size // 2
    data[middle:middle + 64] = bytes(64)
    flipped.write_bytes(bytes(data))
    with pytest.raises(DataError, match="flipped.npz"):
        load_episode(flipped, ROLLOUT_SCHEMA)


def test_missing_empty_and_file_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        RolloutFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no rollout files"):
        RolloutFolder(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        RolloutFolder(tmp_path / "file")


def test_folder_lists_lengths_and_ignores_temp_files(tmp_path):
    folder = write_folder(tmp_path / "r", [5, 9, 3])
    (folder / ".episode_000003.npz.abc.tmp").write_bytes(b"partial")
    rollouts = RolloutFolder(folder)
    assert len(rollouts) == 3
    assert list(rollouts.lengths()) == [5, 9, 3]
    assert rollouts[1]["obs"].shape == (9, 64, 64, 3)


def test_windows_pad_short_episodes_with_a_mask(tmp_path):
    rollouts = RolloutFolder(write_folder(tmp_path / "r", [3, 10]))
    windows = list(rollouts.iter_windows(4, shuffle=False))
    assert [int(w["mask"].sum()) for w in windows] == [3, 4, 4]
    assert windows[0]["obs"].shape == (4, 64, 64, 3) and not windows[0]["mask"][3]
    assert not windows[0]["obs"][3].any()


def test_reader_memory_does_not_grow_with_folder_size(tmp_path):
    def peak_bytes(folder):
        rollouts = RolloutFolder(folder)
        tracemalloc.start()
        for _ in frame_batches(rollouts.paths, rollouts.schema, 32, buffer_episodes=4, seed=0):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small = peak_bytes(write_folder(tmp_path / "small", [60] * 24))  # past the read-ahead: 6 buffers
    large = peak_bytes(write_folder(tmp_path / "large", [60] * 96))
    whole_large = 96 * 60 * 64 * 64 * 3
    assert large < 1.5 * small, (small, large)
    assert large < whole_large / 3, (large, whole_large)
