"""The parts of the data benchmark (benchmarks/bench_data.py) that need no timing: the tree it
prepares, the loader it runs, its arguments. Its real run is in tests/e2e/test_bench.py."""

import pytest
import torch

from benchmarks import bench_data
from benchmarks.bench_data import BenchError, loader_rate, photo_like_jpegs, write_tree
from mgrb.data.augment import Augment
from mgrb.data.folder import decode_image, imagenet100_files, imagenet100_wnids


def test_the_tree_is_imagenet100s_layout_with_every_class_in_both_splits(tmp_path):
    tree = write_tree(tmp_path, 250)
    assert (tree["images"], tree["train_images"], tree["val_images"]) == (250, 150, 100)
    sources = imagenet100_files(tmp_path / "imagenet100")  # what `mgrb data prepare` lists
    assert len(sources.train_paths) == 150 and len(sources.test_paths) == 100
    assert sorted(set(sources.train_labels)) == list(range(100))
    assert sources.wnids == imagenet100_wnids()
    # the 150 training images spread as evenly as they go: 2 for the first 50 classes, then 1
    per_class = [sources.train_labels.count(label) for label in range(100)]
    assert per_class == [2] * 50 + [1] * 50
    assert decode_image(sources.train_paths[0], 256).shape == (256, 256, 3)


def test_the_jpegs_are_500x375_near_a_photographs_file_size():
    from io import BytesIO

    from PIL import Image

    blobs = photo_like_jpegs(4)
    assert len(set(blobs)) == 4
    for blob in blobs:
        with Image.open(BytesIO(blob)) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (500, 375), "RGB")
    assert 60_000 < sum(map(len, blobs)) / 4 < 160_000  # ILSVRC's mean is about 110 KB


def test_a_tree_too_small_for_the_classes_is_refused(tmp_path):
    with pytest.raises(BenchError, match="at least 200 are needed"):
        write_tree(tmp_path, 199)


@pytest.mark.parametrize("resident", [True, False])
def test_the_loader_rate_counts_one_whole_epoch(resident):
    images = torch.randint(0, 256, (10, 3, 256, 256), dtype=torch.uint8)
    labels = torch.randint(0, 100, (10,))
    row = loader_rate(images, labels, torch.device("cpu"), resident=resident, batch=4,
                      augment=Augment(flip=True, rotation=15, random_resized_crop=True))
    assert row["images"] == 10 and row["resident"] is resident  # batches 4, 4, 2
    assert row["seconds"] > 0 and row["images_per_s"] == pytest.approx(10 / row["seconds"])


def test_the_loader_takes_imagenet100s_augmentation_from_its_experiment():
    assert bench_data.imagenet_augment() == Augment(flip=True, rotation=15, random_resized_crop=True)


@pytest.mark.parametrize("argv, message", [
    (["--images", "150"], "at least 200 are needed"),
    (["--workers", "0"], "is not a positive whole number"),
    (["--loader-images", "x"], "is not a positive whole number"),
    (["--batch", "-4"], "is not a positive whole number"),
])
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench_data.parse(["--device", "cpu", *argv])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_defaults_follow_the_machine():
    args = bench_data.parse(["--device", "cpu", "--workers", "2"])
    assert (args.images, args.batch, args.loader_images, args.out) == (400, 128, 1024, None)
    assert bench_data.parse(["--device", "cpu"]).workers == bench_data.available_cores()
    # many processes: three chunks of 32 images each, so that their start is a small share
    assert bench_data.parse(["--device", "cpu", "--workers", "16"]).images == 3 * 32 * 16
    assert bench_data.parse(["--device", "cpu", "--workers", "16", "--images", "250"]).images == 250
