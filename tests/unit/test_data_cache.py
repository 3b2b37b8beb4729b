"""`mgrb data prepare` and the uint8 cache, on small trees written in the real layouts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgrb.cli import main
from mgrb.data import shards
from mgrb.data.cache import cache_present, load_cache
from mgrb.data.folder import imagenet100_wnids, load_miniimagenet, miniimagenet_files
from mgrb.data.prepare import prepare_cache
from mgrb.errors import DataError

ROOT = Path(__file__).parents[2]
RNG = np.random.default_rng(1993)


def _noise(height, width, channels=3):
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _odd_images(folder: Path, count: int) -> None:
    """Every kind of file a real tree holds: odd sizes and aspect ratios, JPEG and PNG,
    greyscale, CMYK, palette and RGBA."""
    folder.mkdir(parents=True)
    makers = [
        lambda: (Image.fromarray(_noise(37, 61)), "jpg"),
        lambda: (Image.fromarray(_noise(91, 13)), "png"),
        lambda: (Image.fromarray(_noise(29, 40, 1)[..., 0], "L"), "jpg"),
        lambda: (Image.fromarray(_noise(33, 21, 4), "CMYK"), "jpg"),
        lambda: (Image.fromarray(_noise(17, 50, 4), "RGBA"), "png"),
        lambda: (Image.fromarray(_noise(45, 45)).convert("P"), "png"),
    ]
    for index in range(count):
        image, suffix = makers[index % len(makers)]()
        image.save(folder / f"img{index:02d}.{suffix}")


def _mini_tree(root: Path, wnids=("n01", "n02", "n03"), per_class=6) -> Path:
    for wnid in wnids:
        _odd_images(root / wnid, per_class)
    return root


def _imagenet_tree(data: Path) -> Path:
    """The 100 real class folders, two training images and one validation image each."""
    for wnid in imagenet100_wnids():
        for split, count in (("train", 2), ("val", 1)):
            (data / "imagenet100" / split / wnid).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(_noise(9 + i, 7)).save(data / "imagenet100" / split / wnid / f"a{i}.JPEG")
    return data


def _cv2_decode(path: Path, size: int) -> np.ndarray:
    """What the authors' code reads (cv2.imread, cv2.resize), channel-first, in the RGB order
    the cache records."""
    import cv2

    image = cv2.imread(str(path))
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size))
    return image[..., ::-1].transpose(2, 0, 1)


def test_cache_pixels_labels_and_wnids_equal_a_direct_decode(tmp_path, monkeypatch):
    root = _mini_tree(tmp_path / "miniimagenet")
    monkeypatch.setattr(shards, "CHUNK_IMAGES", 3)  # chunks that start inside a shard
    done = prepare_cache("miniimagenet", root, tmp_path / "cache", workers=2, shard_images=7,
                         verify_classes=False)
    assert (done.images, done.decoded) == (18, 18)
    data = load_cache(tmp_path / "cache")
    sources = miniimagenet_files(root, verify_classes=False)
    assert data.train_images.shape == (15, 3, 84, 84) and data.test_images.shape == (3, 3, 84, 84)
    expected = np.stack([_cv2_decode(path, 84) for path in sources.train_paths + sources.test_paths])
    assert np.array_equal(np.concatenate([data.train_images.numpy(), data.test_images.numpy()]), expected)
    assert data.train_labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and data.wnids == ["n01", "n02", "n03"]
    # the same tensors as the loader that decodes at every run start
    direct = load_miniimagenet(root, verify_classes=False)
    assert data.train_images.equal(direct.train_images) and data.test_labels.equal(direct.test_labels)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 15, "test": 3} and manifest["split"] == sources.split
    assert [(s["file"], s["first"], s["count"]) for s in manifest["shards"]] == [
        ("train-00000.npy", 0, 7), ("train-00001.npy", 7, 7), ("train-00002.npy", 14, 1),
        ("test-00000.npy", 0, 3)]
    shard = np.load(tmp_path / "cache" / "train-00001.npy", mmap_mode="r")
    assert shard.shape == (7, 3, 84, 84) and shard.dtype == np.uint8 and shard.flags.c_contiguous


def test_imagenet100_cache_in_the_default_folder(tmp_path):
    data_root = _imagenet_tree(tmp_path / "data")
    assert not cache_present("imagenet100", data_root)
    done = prepare_cache("imagenet100", data_root, workers=1, image_size=16)
    assert done.folder == data_root / "imagenet100-cache-16" and done.images == 300
    assert cache_present("imagenet100", data_root, 16) and not cache_present("miniimagenet", data_root, 16)
    data = load_cache(done.folder)
    assert data.wnids == imagenet100_wnids() and data.num_classes == 100
    assert data.train_labels.tolist() == [c for c in range(100) for _ in range(2)]
    assert data.test_labels.tolist() == list(range(100))
    first = data_root / "imagenet100" / "val" / imagenet100_wnids()[0] / "a0.JPEG"
    assert np.array_equal(data.test_images[0].numpy(), _cv2_decode(first, 16))


def test_a_corrupt_image_is_named_and_nothing_looks_finished(tmp_path, capsys):
    data_root = _imagenet_tree(tmp_path / "data")
    bad = data_root / "imagenet100" / "val" / imagenet100_wnids()[50] / "a0.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])  # a download cut short
    assert main(["data", "prepare", "imagenet100", "--root", str(data_root), "--workers", "1",
                 "--shard-images", "64", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"mgrb: error: {bad}: not a readable image") and error.count("\n") == 1
    assert "replace or remove it" in error and "Traceback" not in error
    cache = data_root / "imagenet100-cache-256"
    assert not (cache / "manifest.json").exists() and not list(cache.glob(".*.tmp"))
    assert (cache / "train-00003.npy").exists()  # the finished shards stay for the next try
    with pytest.raises(DataError, match="holds no manifest.json"):
        load_cache(cache)


def test_cli_summary_and_exit_codes(tmp_path, capsys):
    data_root = _imagenet_tree(tmp_path / "data")
    out = tmp_path / "cache"
    assert main(["data", "--root", str(data_root), "prepare", "imagenet100", "--out", str(out),
                 "--workers", "1", "--quiet"]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.startswith("imagenet100: 300 images (300 decoded now) in ")
    assert " images/s with 1 process; cache of 0.06 GB in " in summary and summary.endswith(str(out))
    assert main(["data", "prepare", "imagenet100", "--root", str(tmp_path / "none"), "--quiet"]) == 2
    assert "ImageNet-100 incomplete in" in capsys.readouterr().err
    assert main(["data", "prepare", "imagenet100", "--root", str(data_root), "--out",
                 str(data_root / "imagenet100"), "--quiet"]) == 2  # never into a folder of something else
    assert "not an image cache" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "prepare", "imagenet100", "--workers", "0"])


def test_a_changed_shard_is_refused_and_prepared_again(tmp_path):
    root = _mini_tree(tmp_path / "miniimagenet")
    cache = tmp_path / "cache"
    prepare_cache("miniimagenet", root, cache, workers=1, shard_images=4, verify_classes=False)
    shard = cache / "train-00002.npy"
    original = shard.read_bytes()
    shard.write_bytes(original[:-1000] + bytes([original[-1000] ^ 1]) + original[-999:])
    with pytest.raises(DataError, match="train-00002.npy: its sha256 differs"):
        load_cache(cache)
    again = prepare_cache("miniimagenet", root, cache, workers=1, shard_images=4, verify_classes=False)
    assert again.decoded == 4 and shard.read_bytes() == original  # that shard only, redone
    shard.write_bytes(original[:-1])
    with pytest.raises(DataError, match=r"train-00002.npy: holds uint8 \(4, 3, 84, 84\) in"):
        load_cache(cache)
    shard.unlink()
    with pytest.raises(DataError, match="train-00002.npy: missing"):
        load_cache(cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps({**manifest, "format_version": 9}))
    with pytest.raises(DataError, match="format version 9"):
        load_cache(cache)
    (cache / "manifest.json").unlink()
    with pytest.raises(DataError, match=f"{cache}: holds no manifest.json"):
        load_cache(cache)


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs (zombies left to a lax init do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def _recorded(cache: Path) -> dict:
    try:
        return json.loads((cache / "progress.json").read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return {}


def test_a_prepare_killed_mid_way_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    data_root = _imagenet_tree(tmp_path / "data")
    # the last class's second validation image never finishes decoding (tests/faults), so
    # the kill lands mid-way whatever the speed of the machine
    stalled = data_root / "imagenet100" / "val" / imagenet100_wnids()[-1] / "b.JPEG"
    Image.fromarray(_noise(12, 8)).save(stalled)
    cache = data_root / "imagenet100-cache-256"
    command = [sys.executable, "-m", "mgrb", "data", "prepare", "imagenet100", "--root",
               str(data_root), "--shard-images", "16", "--workers", "2", "--quiet"]
    faults = {**os.environ, "MGRB_TEST_STALL_DECODE": "b.JPEG",
              "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests" / "faults"),
                                                          os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, env=faults,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (cache / "train-00000.npy").exists() and _recorded(cache),
                  "the first shard", seconds=120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        _wait_for(lambda: not _group_alive(process.pid), "the decoders to end with their parent")
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    assert not (cache / "manifest.json").exists()
    kept = _recorded(cache)
    before = {name: (cache / name).stat().st_ino for name in kept}

    resumed = subprocess.run(command[:-1], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"301 images ({301 - 16 * len(kept)} decoded now)" in resumed.stdout
    assert {name: (cache / name).stat().st_ino for name in kept} == before  # not rewritten
    assert not list(cache.glob(".*.tmp"))
    prepare_cache("imagenet100", data_root, tmp_path / "whole", workers=1, shard_images=16)
    assert (cache / "manifest.json").read_text() == (tmp_path / "whole" / "manifest.json").read_text()
    assert load_cache(cache).test_images.shape == (101, 3, 256, 256)


def test_mgrb_data_points_to_prepare_and_then_to_the_cache(tmp_path, capsys):
    data_root = _imagenet_tree(tmp_path / "data")
    assert main(["data", "--root", str(data_root), "--no-download"]) == 0
    assert "imagenet100: present in" in capsys.readouterr().out
    prepare_cache("imagenet100", data_root, workers=1)
    assert main(["data", "--root", str(data_root), "--no-download"]) == 0
    assert f"imagenet100: cache in {data_root / 'imagenet100-cache-256'}" in capsys.readouterr().out
