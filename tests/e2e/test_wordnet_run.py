"""An ImageNet-100 run end to end on a tiny generated tree, prepared first into the cache
(runs read only that), with the imagenet stem: WordNet tree targets with the original's stage
depths, and stage 2."""

import json

from PIL import Image

from mgrb.cli import main
from mgrb.data.folder import imagenet100_wnids

EXPERIMENT = """\
name: i100_tiny
dataset: {name: imagenet100, root: ROOT, image_size: 32}
protocol: {initial: 98, increment: 1, memory_total: 1000}
model: {backbone: resnet_small, stem: imagenet}
train: {epochs: 1, milestones: [], stage2_epochs: 2, batch_size: 64,
        eval_batch_size: 100}
method: {losses: ce+distill+hierloss, beta: 50, dscale: 1.0}
hierarchy: {kind: ont}
"""


def test_imagenet100_tree_hierarchy_run(tmp_path, capsys):
    root = tmp_path / "data"
    for class_id, wnid in enumerate(imagenet100_wnids()):
        for split, count in (("train", 3), ("val", 1)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                colour = (class_id * 2, i * 60, 255 - class_id * 2)
                Image.new("RGB", (40, 30), colour).save(folder / f"{i}.JPEG", "JPEG")
    path = tmp_path / "i100_tiny.yaml"
    path.write_text(EXPERIMENT.replace("ROOT", str(root)))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert f"mgrb data prepare imagenet100 --root {root} --size 32" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["data", "prepare", "imagenet100", "--root", str(root), "--size", "32", "--quiet"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [p["seen_classes"] for p in results["phases"]] == [98, 99, 100]
    hierarchy = results["phases"][2]["hierarchy"]
    assert hierarchy["kind"] == "ont" and "WordNet" in hierarchy["source"]
    assert (hierarchy["depth_stage1"], hierarchy["depth_stage2"]) == (2, 18)  # quirk defaults
    assert hierarchy["tree_height"] > 2
    assert results["phases"][1]["train_images"] == 98 * 2 + 1 * 2  # exemplars + new class
    assert results["phases"][1]["balanced_images"] == 99
