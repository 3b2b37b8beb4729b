"""ImageNet-100 as users run it at GPU speed, on the CPU at a reduced side: `mgrb data prepare`
decodes a generated tree (odd sizes) into the uint8 cache, and a run trains from it through
three phases with both stages: random resized crops on the batch, evaluation on the centre
crop, the balanced set augmented in every stage-2 epoch (train.stage2_augment, the data set's
default), WordNet tree targets."""

import json

import numpy as np
import yaml
from PIL import Image

from mgrb.cli import main
from mgrb.data.folder import imagenet100_wnids

EXPERIMENT = """\
name: i100_cached
dataset: {name: imagenet100, root: ROOT, image_size: 32}
protocol: {initial: 50, increment: 25, memory_total: 200, holdout_fraction: 0.5}
model: {backbone: resnet_small}
train: {epochs: 1, milestones: [], stage2_epochs: 2, batch_size: 64, eval_batch_size: 100}
method: {losses: ce+distill+hierloss, beta: 50, dscale: 1.0}
hierarchy: {kind: ont}
"""


def test_prepare_then_train_from_the_cache_through_three_phases(tmp_path, capsys):
    root = tmp_path / "data"
    generator = np.random.default_rng(0)
    for class_id, wnid in enumerate(imagenet100_wnids()):
        for split, count in (("train", 4), ("val", 1)):
            folder = root / "imagenet100" / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                size = (48 + (class_id + i) % 7, 37 + i)  # odd sides, squashed to 37x37
                pixels = generator.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                pixels[..., class_id % 3] //= 4  # something for the network to learn
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", "JPEG")
    assert main(["data", "prepare", "imagenet100", "--root", str(root), "--size", "32", "--quiet"]) == 0
    assert "500 images" in capsys.readouterr().out
    assert (root / "imagenet100-cache-37" / "manifest.json").is_file()

    path = tmp_path / "i100_cached.yaml"
    path.write_text(EXPERIMENT.replace("ROOT", str(root)))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [p["seen_classes"] for p in results["phases"]] == [50, 75, 100]
    assert "imagenet100-cache-37" in results["data_source"]
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["train"]["stage2_augment"] is True and config["train"]["augment"]["random_resized_crop"]
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    stage2 = [(e["phase"], e["epoch"]) for e in events if e["event"] == "epoch" and e.get("stage") == "stage2"]
    assert stage2 == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert results["phases"][1]["balanced_images"] == 75  # one held-out image per seen class
    assert results["phases"][2]["hierarchy"]["kind"] == "ont"
