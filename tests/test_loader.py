"""data.loader: the same batches for any number of worker processes, every frame once, clean errors;
and stage 02 through it: another --loader_workers, or a resume, gives the same weights."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from test_rollouts import write_folder
from test_series import save_vae
from test_train_vae import config, doom_rollouts, rollouts  # noqa: F401 - fixtures

from common.errors import DataError
from data.encode import encode_rollouts
from data.episodes import load_episode
from data.loader import episodes, frame_batches
from data.rollouts import ROLLOUT_SCHEMA, RolloutFolder, episode_path
from models.loading import load_vae
from training import vae as vae_training
from training.vae import train_vae

LENGTHS = [13, 7, 20, 1, 9, 30, 4, 11]


def digests(batches) -> list[str]:
    """Each batch hashed as it comes (a consumer done with a batch before it asks for the next)."""
    return [hashlib.sha256(np.ascontiguousarray(b).tobytes()).hexdigest() + f":{len(b)}" for b in batches]


@pytest.fixture
def folder(tmp_path) -> RolloutFolder:
    return RolloutFolder(write_folder(tmp_path / "r", LENGTHS))


def test_same_batches_for_any_worker_count_and_every_frame_once(folder):
    kw = dict(batch_size=8, buffer_episodes=2, seed=3)
    streams = {w: list(frame_batches(folder.paths, folder.schema, workers=w, **kw)) for w in (0, 1, 2)}
    for w in (1, 2):
        assert len(streams[w]) == len(streams[0])
        for a, b in zip(streams[0], streams[w]):
            assert torch.equal(a, b)
    batches = streams[2]
    assert all(len(b) == 8 for b in batches[:-1]) and 0 < len(batches[-1]) <= 8
    frames = torch.cat(batches).numpy()
    expected = np.concatenate([folder[i]["obs"] for i in range(len(LENGTHS))])
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
    assert key(frames) == key(expected) and not np.array_equal(frames, expected)
    assert not torch.equal(torch.cat(list(frame_batches(folder.paths, folder.schema, **{**kw, "seed": 4}))),
                           torch.cat(batches))
    unshuffled = torch.cat(list(frame_batches(folder.paths, folder.schema, 8, shuffle=False, workers=2)))
    np.testing.assert_array_equal(unshuffled.numpy(), expected)


def test_a_training_loop_may_take_batches_without_copies(folder):
    """keep=False hands out views of reused shared-memory slots; used at once, they hold the right frames."""
    kw = dict(batch_size=4, buffer_episodes=1, seed=0)  # many small buffers: every slot is reused
    kept = digests(frame_batches(folder.paths, folder.schema, workers=0, **kw))
    assert digests(frame_batches(folder.paths, folder.schema, workers=2, keep=False, **kw)) == kept
    assert digests(frame_batches(folder.paths, folder.schema, workers=1, keep=False, **kw)) == kept


def test_corrupt_file_is_one_data_error_naming_it(folder):
    episode_path(folder.folder, 5).write_bytes(b"not a zip file")
    for workers in (0, 2):
        with pytest.raises(DataError, match="episode_000005.npz: corrupt") as info:
            list(frame_batches(folder.paths, folder.schema, 8, workers=workers))
        assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
        with pytest.raises(DataError, match="episode_000005.npz"):
            list(episodes(folder.paths, ROLLOUT_SCHEMA, workers=workers))


def test_episodes_in_file_order_for_any_worker_count(tmp_path):
    # 20 episodes: more than the 2 workers' slots (4 each), so kept episodes outlive their slots' reuse
    folder = RolloutFolder(write_folder(tmp_path / "r", [(7 * i) % 23 + 1 for i in range(20)]))
    wanted = [load_episode(path, ROLLOUT_SCHEMA) for path in folder.paths]
    for workers in (0, 2):
        got = list(episodes(folder.paths, ROLLOUT_SCHEMA, workers=workers))  # keep=True: all kept
        assert len(got) == len(wanted)
        for episode, want in zip(got, wanted):
            assert set(episode) == set(want) and isinstance(episode["obs"], np.ndarray)
            for k in want:
                assert episode[k].dtype == want[k].dtype
                np.testing.assert_array_equal(episode[k], want[k])
        seen = [{k: v.tobytes() for k, v in e.items()}  # keep=False: each used before the next comes
                for e in episodes(folder.paths, ROLLOUT_SCHEMA, workers=workers, keep=False)]
        assert seen == [{k: v.tobytes() for k, v in e.items()} for e in wanted]


def weights(vae_folder) -> dict:
    return torch.load(vae_folder / "last.pt", map_location="cpu", weights_only=True)["model"]


def test_stage02_same_weights_with_other_loader_workers_and_after_a_resume(rollouts, monkeypatch):  # noqa: F811
    """One epoch straight through (0 workers) vs 2 workers vs killed after 3 steps and resumed with 2."""
    runs = {}
    for name, workers in (("thread", 0), ("processes", 2)):
        cfg = config(rollouts, savefolder=str(rollouts.parent / name), epochs=2, max_frames=64, loader_workers=workers)
        train_vae(cfg, log=lambda *_: None)
        runs[name] = weights(rollouts.parent / name)

    real_capped = vae_training.capped

    def interrupted(batches, limit):
        for i, batch in enumerate(real_capped(batches, limit)):
            if i == 3:
                raise KeyboardInterrupt
            yield batch

    cfg = config(rollouts, savefolder=str(rollouts.parent / "resumed"), epochs=2, max_frames=64, loader_workers=0)
    monkeypatch.setattr(vae_training, "capped", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_vae(cfg, log=lambda *_: None)
    monkeypatch.setattr(vae_training, "capped", real_capped)
    step = torch.load(rollouts.parent / "resumed" / "last.pt", weights_only=True)["progress"]["step"]
    assert step == 3
    train_vae(config(rollouts, savefolder=str(rollouts.parent / "resumed"), epochs=2, max_frames=64, loader_workers=2),
              log=lambda *_: None)
    runs["resumed"] = weights(rollouts.parent / "resumed")
    for name in ("processes", "resumed"):
        assert runs[name].keys() == runs["thread"].keys()
        for k in runs["thread"]:
            assert torch.equal(runs[name][k], runs["thread"][k]), (name, k)


def test_stage03_same_series_files_with_worker_processes(tmp_path):
    """Stage 03 takes episodes as views of the workers' reused slots (keep=False): nothing it writes may
    differ from the series of the plain thread reader, over more episodes than the workers have slots."""
    rollout_folder = RolloutFolder(write_folder(tmp_path / "r", [(5 * i) % 17 + 2 for i in range(20)]))
    save_vae(tmp_path / "vae.pt")
    vae, identity = load_vae(tmp_path / "vae.pt", torch.device("cpu"))
    files = {}
    for workers in (0, 2):
        out = tmp_path / f"series{workers}"
        encode_rollouts(rollout_folder, vae, identity, out, batch_size=8, progress=False, loader_workers=workers)
        files[workers] = {p.name: p.read_bytes() for p in sorted(out.glob("*.npz"))}
    assert len(files[0]) == 21 and files[2] == files[0]  # 20 series + initial_z.npz, byte for byte
