"""Special files where the data readers expect a regular one (issue 28): a FIFO (which would
block a reader for ever), a link to /dev/zero and a character device (which never end), and
JSON nested 200,000 deep (which exhausts a recursive parser). Each reader answers within
seconds: one DataError naming the file, or, for a record it can do without (progress.json),
it carries on without it. Each case runs in its own process, so a hang fails the test on its
timeout rather than stopping the suite."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgrb.data.folder import imagenet100_wnids

ROOT = Path(__file__).parents[2]
KINDS = ("fifo", "zero_link", "device", "deep_json")
READERS = {
    # reader: (the file replaced, what the reader does, what it must answer)
    "manifest": ("cache/manifest.json", "load", "DataError"),
    "shard": ("cache/train-00000.npy", "load", "DataError"),
    "labels": ("cache/train-labels.npy", "load", "DataError"),
    "progress": ("cache/progress.json", "prepare", "prepared"),
    "prepare_lock": ("cache/.prepare.lock", "prepare", "DataError"),
    "image": ("tree/imagenet100/train/{wnid}/a0.JPEG", "prepare", "DataError"),
}
READER = textwrap.dedent("""
    import sys
    from mgrb.data.cache import load_cache
    from mgrb.data.prepare import prepare_cache
    from mgrb.errors import DataError
    action, tree, cache = sys.argv[1:4]
    try:
        if action == "load":
            load_cache(cache)
        else:
            prepare_cache("imagenet100", tree, cache, workers=1, image_size=8)
    except DataError as error:
        print("DataError:", error)
    else:
        print("prepared" if action == "prepare" else "loaded")
""")


def _tree(base: Path) -> Path:
    rng = np.random.default_rng(0)
    for wnid in imagenet100_wnids():
        for split in ("train", "val"):
            (base / "imagenet100" / split / wnid).mkdir(parents=True)
            image = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
            Image.fromarray(image).save(base / "imagenet100" / split / wnid / "a0.JPEG")
    return base


def _plant(path: Path, kind: str) -> None:
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero_link":
        path.symlink_to("/dev/zero")
    elif kind == "device":
        os.mknod(path, 0o666 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers
    else:
        path.write_text("[" * 200_000 + "]" * 200_000)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from mgrb.data.prepare import prepare_cache

    base = tmp_path_factory.mktemp("special")
    tree = _tree(base / "tree")
    prepare_cache("imagenet100", tree, base / "cache", workers=1, image_size=8)
    return base


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_each_reader_answers_a_special_file_within_seconds(prepared, tmp_path, reader, kind):
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    if kind == "deep_json" and reader not in ("manifest", "progress"):
        pytest.skip("only the JSON readers parse what they read")
    import shutil

    shutil.copytree(prepared, tmp_path / "copy", symlinks=True)
    base = tmp_path / "copy"
    relative, action, expected = READERS[reader]
    _plant(base / relative.format(wnid=imagenet100_wnids()[0]), kind)
    done = subprocess.run([sys.executable, "-c", READER, action, str(base / "tree"),
                           str(base / "cache")], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), done.stdout
    if expected == "DataError":
        assert Path(relative).name in lines[0], lines[0]


def _manifest_lie(manifest: dict, how: str) -> dict:
    if how == "three_classes":
        manifest["wnids"] = manifest["wnids"][:3]
    elif how == "no_images_of_a_huge_side":
        manifest.update(counts={"train": 0, "test": 0}, image_size=10**9, shards=[])
    elif how == "a_terabyte_shard":
        side = manifest["image_size"]
        extra = 10**12 // (3 * side * side)
        first = next(s for s in manifest["shards"] if s["split"] == "train")
        first["count"] += extra
        for shard in manifest["shards"]:
            if shard["split"] == "train" and shard is not first:
                shard["first"] += extra
        manifest["counts"]["train"] += extra
    elif how == "one_image_more_than_its_file":
        first = next(s for s in manifest["shards"] if s["split"] == "train")
        first["count"] += 1
        for shard in manifest["shards"]:
            if shard["split"] == "train" and shard is not first:
                shard["first"] += 1
        manifest["counts"]["train"] += 1
    return manifest


@pytest.mark.parametrize("how, said", [
    ("three_classes", "wnids: 3 classes, where imagenet100 has 100"),
    ("no_images_of_a_huge_side", "image_size 1000000000 (1 to 1024)"),
    ("a_terabyte_shard", "train images for 100 classes (at least one a class, at most 2,000,000)"),
    ("one_image_more_than_its_file", "where its manifest entry declares"),
])
def test_a_self_consistent_manifest_that_cannot_be_the_data_set_is_refused_before_loading(
        prepared, tmp_path, how, said):
    """Each lie keeps the manifest's own arithmetic (shards tiling the counts): refused when
    read, before a tensor is allocated from it, with one message."""
    import shutil

    from mgrb.data.cache import load_cache
    from mgrb.errors import DataError

    cache = tmp_path / "cache"
    shutil.copytree(prepared / "cache", cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps(_manifest_lie(manifest, how)))
    with pytest.raises(DataError, match=re.escape(said)):
        load_cache(cache)
