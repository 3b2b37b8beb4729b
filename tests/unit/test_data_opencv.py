"""ImageNet-100 decoded exactly as the authors' code decoded it (code/LoadImagenet100.py:
`cv2.imread(path)` then `cv2.resize(img, (256, 256))`), and read only from the prepared cache:
a run without the cache stops before it makes its run folder, with the command that makes it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mgrb.data import data_present, images_present, load_dataset, require_prepared
from mgrb.data.cache import CHANNELS, cache_present, load_cache, prepare_command
from mgrb.data.folder import decode_image, imagenet100_files, imagenet100_wnids
from mgrb.data.prepare import prepare_cache
from mgrb.errors import DataError

ROOT = Path(__file__).parents[2]
RNG = np.random.default_rng(27)


def _noise(height, width, channels=3):
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _rotated_by_exif(path: Path) -> None:
    """300 wide, 217 high, with EXIF orientation 6 (shown turned 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_noise(217, 300)).save(path, "JPEG", exif=exif)


# Every kind of file ILSVRC holds or a user's copy may: odd sizes, greyscale and CMYK JPEGs,
# PNG data under a .JPEG name, an EXIF-rotated photograph, one already 256x256.
ODD_FILES = {
    "wide.JPEG": lambda path: Image.fromarray(_noise(217, 300)).save(path, "JPEG"),
    "tall.JPEG": lambda path: Image.fromarray(_noise(401, 17)).save(path, "JPEG", quality=70),
    "grey.JPEG": lambda path: Image.fromarray(_noise(50, 33, 1)[..., 0], "L").save(path, "JPEG"),
    "cmyk.JPEG": lambda path: Image.fromarray(_noise(41, 60, 4), "CMYK").save(path, "JPEG"),
    "png.JPEG": lambda path: Image.fromarray(_noise(23, 71)).save(path, "PNG"),
    "exif.JPEG": _rotated_by_exif,
    "square.JPEG": lambda path: Image.fromarray(_noise(256, 256)).save(path, "JPEG"),
}


def _imagenet_tree(data: Path, odd: bool = True) -> Path:
    """The 100 class folders, one small JPEG per class and split; the odd files in the first
    class's training folder and the second class's validation folder."""
    wnids = imagenet100_wnids()
    for wnid in wnids:
        for split in ("train", "val"):
            folder = data / "imagenet100" / split / wnid
            folder.mkdir(parents=True)
            Image.fromarray(_noise(9, 7)).save(folder / "a.JPEG", "JPEG")
    if odd:
        for folder in (data / "imagenet100" / "train" / wnids[0], data / "imagenet100" / "val" / wnids[1]):
            for name, make in ODD_FILES.items():
                make(folder / name)
    return data


def _original(path: Path, size: int = 256) -> np.ndarray:
    """The authors' code, line for line: BGR, height x width x 3."""
    img = cv2.imread(str(path))
    return cv2.resize(img, (size, size))


def _in_recorded_order(bgr: np.ndarray, channels: str) -> np.ndarray:
    assert channels in ("RGB", "BGR")
    return (bgr[..., ::-1] if channels == "RGB" else bgr).transpose(2, 0, 1)


def test_the_odd_files_are_what_they_claim(tmp_path):
    """The tree tests what it means to: cv2 reads all of them as 3 channels, by content, and
    turns the EXIF-rotated image upright (PIL would not have)."""
    folder = tmp_path / "odd"
    folder.mkdir()
    for name, make in ODD_FILES.items():
        make(folder / name)
    with Image.open(folder / "png.JPEG") as image:
        assert image.format == "PNG"
    with Image.open(folder / "cmyk.JPEG") as image:
        assert (image.format, image.mode) == ("JPEG", "CMYK")
    with Image.open(folder / "grey.JPEG") as image:
        assert image.mode == "L"
    for name in ODD_FILES:
        assert cv2.imread(str(folder / name)).shape[2] == 3
    assert cv2.imread(str(folder / "exif.JPEG")).shape == (300, 217, 3)  # upright
    assert cv2.imread(str(folder / "exif.JPEG"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
                      ).shape == (217, 300, 3)
    assert cv2.imread(str(folder / "tall.JPEG")).shape == (401, 17, 3)


def test_every_cached_image_is_the_originals_decode_pixel_for_pixel(tmp_path):
    data_root = _imagenet_tree(tmp_path / "data")
    done = prepare_cache("imagenet100", data_root, workers=2, shard_images=64)
    assert done.folder == data_root / "imagenet100-cache-256" and done.images == 214
    manifest = json.loads((done.folder / "manifest.json").read_text())
    assert manifest["channels"] == CHANNELS == "RGB" and manifest["format_version"] == 2
    assert "cv2.imread" in manifest["pixels"] and "cv2.resize" in manifest["pixels"]
    data = load_cache(done.folder)
    sources = imagenet100_files(data_root / "imagenet100")
    cached = np.concatenate([data.train_images.numpy(), data.test_images.numpy()])
    paths = sources.train_paths + sources.test_paths
    assert cached.shape == (214, 3, 256, 256) and len(paths) == 214
    for path, image in zip(paths, cached, strict=True):
        assert np.array_equal(image, _in_recorded_order(_original(path), manifest["channels"])), path
    assert sum(path.name in ODD_FILES for path in paths) == 2 * len(ODD_FILES)
    odd = {path.name: image for path, image in zip(paths, cached)
           if path.name in ODD_FILES and path.parent.parent.name == "train"}
    # the EXIF rotation was applied: the image read ignoring it differs
    exif = data_root / "imagenet100" / "train" / imagenet100_wnids()[0] / "exif.JPEG"
    ignored = cv2.resize(cv2.imread(str(exif), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION), (256, 256))
    assert not np.array_equal(odd["exif.JPEG"], _in_recorded_order(ignored, "RGB"))
    # the greyscale JPEG is three equal channels
    assert np.array_equal(odd["grey.JPEG"][0], odd["grey.JPEG"][2])


def test_a_reduced_side_is_the_same_decode_at_that_side(tmp_path):
    data_root = _imagenet_tree(tmp_path / "data")
    done = prepare_cache("imagenet100", data_root, workers=1, image_size=37)
    data = load_cache(done.folder)
    sources = imagenet100_files(data_root / "imagenet100")
    for path, image in zip(sources.train_paths[:10], data.train_images.numpy()):
        assert np.array_equal(image, _in_recorded_order(_original(path, 37), "RGB")), path
    # decode_image itself: RGB, height x width x channels, resized only when it must be
    square = next(path for path in sources.train_paths if path.name == "square.JPEG")
    assert np.array_equal(decode_image(square, 256), cv2.imread(str(square))[..., ::-1])
    wide = square.with_name("wide.JPEG")
    assert decode_image(wide, 37).shape == (37, 37, 3)


def test_unreadable_files_and_a_missing_opencv_are_named(tmp_path, monkeypatch):
    bad = tmp_path / "bad.JPEG"
    bad.write_text("not an image")
    with pytest.raises(DataError, match=f"{bad}: not a readable image .*replace or remove it"):
        decode_image(bad, 256)
    empty = tmp_path / "empty.JPEG"
    empty.touch()
    with pytest.raises(DataError, match="empty.JPEG: not a readable image"):
        decode_image(empty, 256)
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if the wheel were not installed
    with pytest.raises(DataError, match="decoding images needs OpenCV.*opencv-python-headless"):
        decode_image(bad, 256)
    with pytest.raises(DataError, match="needs OpenCV"):
        prepare_cache("imagenet100", tmp_path, tmp_path / "cache")


def test_a_cache_decoded_by_pil_is_refused_and_remade(tmp_path):
    data_root = _imagenet_tree(tmp_path / "data", odd=False)
    done = prepare_cache("imagenet100", data_root, workers=1, image_size=16)
    manifest = json.loads((done.folder / "manifest.json").read_text())
    progress = json.loads((done.folder / "progress.json").read_text())
    # what version 1 wrote: no channel order, PIL's pixels
    old = {key: value for key, value in manifest.items() if key != "channels"}
    (done.folder / "manifest.json").write_text(json.dumps({**old, "format_version": 1}))
    (done.folder / "progress.json").write_text(json.dumps(
        {key: value for key, value in progress.items() if key not in ("format_version", "channels")}))
    command = prepare_command("imagenet100", data_root / "imagenet100", 16, out=done.folder)
    assert command == (f"mgrb data prepare imagenet100 --root {data_root / 'imagenet100'} --size 14 "
                       f"--out {done.folder}")
    with pytest.raises(DataError, match="format version 1 .decoded by PIL") as refused:
        load_cache(done.folder)
    assert command in str(refused.value)
    assert not cache_present("imagenet100", data_root, 16)
    with pytest.raises(DataError, match="format version 1") as refused:
        load_dataset("imagenet100", data_root, image_size=14)
    assert "mgrb data prepare imagenet100 --root" in str(refused.value)
    again = prepare_cache("imagenet100", data_root, workers=1, image_size=16)
    assert again.decoded == again.images == 200  # nothing kept from the old decoder
    (done.folder / "manifest.json").write_text(json.dumps({**manifest, "channels": "BGR"}))
    with pytest.raises(DataError, match="records channel order 'BGR', not 'RGB'"):
        load_cache(done.folder)


def test_imagenet100_loads_only_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("MGRB_DATA", raising=False)
    data_root = _imagenet_tree(tmp_path / "data", odd=False)
    assert images_present("imagenet100", data_root) and not data_present("imagenet100", data_root)
    with pytest.raises(DataError) as missing:
        load_dataset("imagenet100", data_root)
    message = str(missing.value)
    assert f"mgrb data prepare imagenet100 --root {data_root}\n" in message
    assert "read only from the cache" in message and "imagenet100-cache-256: no such cache folder" in message
    # no image folders either: the layout to put there, then the same command
    with pytest.raises(DataError, match=r"(?s)first put the images.*<root>/imagenet100/train") as none:
        require_prepared("imagenet100", tmp_path / "empty")
    assert f"mgrb data prepare imagenet100 --root {tmp_path / 'empty'}" in str(none.value)
    # the default root: the command needs no --root
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"Make it with:\n  mgrb data prepare imagenet100\n"):
        require_prepared("imagenet100")
    with pytest.raises(DataError, match=r"Make it with:\n  mgrb data prepare imagenet100 --size 32\n"):
        require_prepared("imagenet100", None, 32)
    prepare_cache("imagenet100", data_root, workers=1, image_size=37)
    assert data_present("imagenet100", data_root, 32) and not data_present("imagenet100", data_root)
    assert load_dataset("imagenet100", data_root, image_size=32).train_images.shape == (100, 3, 37, 37)


def test_a_run_without_the_cache_stops_before_its_run_folder(tmp_path):
    data_root = tmp_path / "data"
    for split in ("train", "val"):
        (data_root / "imagenet100" / split).mkdir(parents=True)
    out = tmp_path / "runs" / "i100"
    environment = {**os.environ, "MGRB_DATA": str(data_root)}
    finished = subprocess.run([sys.executable, "-m", "mgrb", "run", "i100_ont_50_10", "--out", str(out),
                               "--device", "cpu"], cwd=ROOT, env=environment, capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 2, finished.stderr
    assert f"mgrb data prepare imagenet100 --root {data_root}\n" in finished.stderr
    assert finished.stderr.startswith("mgrb: error: ImageNet-100 is read only from the cache")
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_the_launcher_and_mgrb_data_say_the_prepare_command(tmp_path, capsys):
    from artifact.core.experiments import data_help
    from mgrb.cli import main

    data_root = _imagenet_tree(tmp_path / "data", odd=False)
    help_text = data_help("imagenet100", data_root)
    assert f"`mgrb data prepare imagenet100 --root {data_root}`" in help_text
    assert "runs read only its prepared cache" in help_text
    assert "--size 32" in data_help("imagenet100", data_root, 32)
    assert "mgrb data prepare imagenet100` decodes it once into the cache" in data_help(
        "imagenet100", tmp_path / "nowhere")
    assert main(["data", "--root", str(data_root), "--no-download"]) == 0
    assert (f"imagenet100: present in {data_root / 'imagenet100'}, not yet prepared: runs read only "
            f"its cache; `mgrb data prepare imagenet100 --root {data_root}` decodes it once"
            ) in capsys.readouterr().out
