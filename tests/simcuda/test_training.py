"""The trainer's device work on a simulated CUDA device: the stage-1 forward and losses of every
loss set under each precision, stage 2, evaluation, the checkpoint writer's host copy, the
per-phase set-up, and `mgrb run` itself from its command line.

Backward is not followed (conftest.py): a stand-in records the call and computes nothing."""

import json

import pytest
import torch

from mgrb.cli import main
from mgrb.config.schema import LOSS_SETS, Method, Train
from mgrb.devices import resolve_device
from mgrb.method.phase import PhaseLosses, stage_inputs
from mgrb.method.terms import class_balanced_weights
from mgrb.method.soft_targets import soft_targets
from mgrb.store.runfolder import RunFolder
from mgrb.training import evaluation
from mgrb.training.checkpoints import host_copy
from mgrb.training.models import IncrementalNet, build_backbone
from mgrb.training.numerics import Numerics, applied
from mgrb.training.progress import Progress
from mgrb.training.stage2 import Stage2Loop

from conftest import DEVICE_CHOICES

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
N_OLD, N_SEEN = 4, 6


def _networks(numerics: Numerics, device):
    torch.manual_seed(0)
    model = IncrementalNet(build_backbone("resnet_small", 3), N_SEEN).to(
        device, memory_format=numerics.memory_format)
    teacher = IncrementalNet(build_backbone("resnet_small", 3), N_OLD).to(
        device, memory_format=numerics.memory_format).eval()
    return model, teacher


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("loss_set", LOSS_SETS)
def test_stage1_losses_of_every_loss_set_are_fp32_on_the_device(simulated, loss_set, precision):
    device = resolve_device("cuda")
    numerics = Numerics.resolve(device, precision=precision)
    assert numerics.channels_last and numerics.fused_optimizer  # "auto" on a GPU
    model, teacher = _networks(numerics, device)
    targets = soft_targets(beta=20.0, coarse=[0, 0, 1, 1, 2, 2]).to(device)
    inputs = stage_inputs(
        Method(losses=loss_set), N_OLD, N_SEEN,
        teacher=lambda x: numerics.logits(teacher.backbone, teacher.classifier, x),
        class_weights=class_balanced_weights([20] * N_OLD + [500] * 2, 100).to(device),
        targets=targets)
    method = PhaseLosses.of(inputs, phase=1, cb_reduction="sum", stage2_targets=targets)
    x = torch.empty(8, 3, 16, 16, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(8, dtype=torch.long, device=device)
    with applied(numerics), simulated.window() as record:
        with numerics.autocast():
            features = model.backbone(x)
        logits = numerics.logits(model.backbone, model.classifier, x)
        terms = method.stage1_loss(logits, y, x)
    assert features.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert (logits.device, logits.dtype) == (device, torch.float32)
    expected = {"ce": {"cls"}, "distill": {"kd"}, "hierloss": {"mg"}}
    assert set(terms) == {"total"}.union(*(expected[part] for part in loss_set.split("+")))
    for name, term in terms.items():
        assert (term.device, term.dtype, term.shape) == (device, torch.float32, ()), name
    assert record.reads == [] and record.copies == []


def test_stage2_trains_the_classifier_on_device_features(simulated, tmp_path):
    device = resolve_device("cuda")
    classifier = torch.nn.Linear(64, N_SEEN).to(device)
    targets = soft_targets(beta=20.0, coarse=[0, 0, 1, 1, 2, 2]).to(device)
    inputs = stage_inputs(Method(), N_OLD, N_SEEN, teacher=None, class_weights=None,
                          targets=targets)
    method = PhaseLosses.of(inputs, phase=1, cb_reduction="sum", stage2_targets=targets)
    features = torch.empty(10, 64, device=device)
    labels = torch.zeros(10, dtype=torch.long, device=device)
    run = RunFolder(tmp_path / "run")
    run.prepare({"name": "x"})
    optimizer = torch.optim.AdamW(classifier.parameters(), fused=True)
    with simulated.window() as record:
        loop = Stage2Loop(train=Train(stage2_epochs=2, batch_size=4), late_decay=False,
                          generator=torch.Generator().manual_seed(0), run=run,
                          progress=Progress(quiet=True), phases=2)
        loop.run_phase(1, classifier, method, lambda: (features, labels), optimizer=optimizer)
    # only the epochs' loss means are read (two epochs, three terms each: cls, mg, total), and
    # only each epoch's order goes to the device
    assert len(record.reads) == 6 and all("stage2.py" in line for line in record.reads)
    copies = [c.where for c in record.blocking_copies]
    assert len(copies) == 2 and all("stage2.py" in c and "order = torch.randperm" in c
                                    for c in copies), copies
    assert record.backward_calls == 2 * 3


def test_evaluation_reads_back_only_the_report(simulated):
    device = resolve_device("cuda")
    numerics = Numerics.resolve(device)
    model, _ = _networks(numerics, device)
    from mgrb.data.batches import TensorBatches

    images = torch.zeros(10, 3, 16, 16, dtype=torch.uint8)
    maker = TensorBatches(images, torch.arange(10) % N_SEEN, (0.5,) * 3, (0.2,) * 3, device)
    with simulated.window() as record:
        logits, labels = evaluation.predict(
            lambda x: numerics.logits(model.backbone, model.classifier, x), maker,
            torch.arange(10), 4)
        assert (logits.device, logits.dtype, labels.device) == (device, torch.float32, device)
    # the images' indices go to the device once; nothing comes back until the report
    assert record.reads == [] and len(record.blocking_copies) == 1
    assert "on_device = indices.to" in record.blocking_copies[0].where
    report = evaluation.accuracy_report(logits, labels, N_OLD)
    assert set(report) >= {"top1", "top5", "old_top1", "new_top1", "per_class_top1"}


def test_a_checkpoint_copies_device_tensors_to_pinned_host_memory_and_waits_once(simulated):
    device = resolve_device("cuda")
    numerics = Numerics.resolve(device)
    model, _ = _networks(numerics, device)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    for parameter in model.parameters():  # stand-in gradients: backward is not simulated
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": torch.Generator().get_state(), "epoch": 3}
    with simulated.window() as record:
        copied = host_copy(state)
    tensors = [*copied["model"].values(),
               *(value for moments in copied["optimizer"]["state"].values()
                 for value in moments.values())]
    assert tensors and all(t.device.type == "cpu" and simulated.pinned(t) for t in tensors)
    assert not any(isinstance(t, torch._subclasses.fake_tensor.FakeTensor) for t in tensors)
    assert record.blocking_copies == [] and record.host_calls["synchronize"] == 1
    assert len(record.copies) == len(tensors)


def test_a_phase_set_up_grows_the_classifier_and_updates_with_the_fused_optimizer(simulated):
    device = resolve_device("cuda:0")
    numerics = Numerics.resolve(device)
    model, _ = _networks(numerics, device)
    conv = model.backbone.stem[0].weight
    assert conv.device == device and conv.is_contiguous(memory_format=torch.channels_last)
    model.renew_classifier(N_SEEN + 2, keep_old_weights=True)
    assert model.classifier.weight.device == device and model.classifier.out_features == N_SEEN + 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    with simulated.window() as record:
        for group in optimizer.param_groups:
            group["lr"] = 5e-4  # as the schedule sets it every step: a Python number
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert record.ops["aten._fused_adamw_"] == 1  # one launch for every parameter
    assert record.reads == [] and record.copies == []
    step = optimizer.state[model.classifier.weight]["step"]
    assert step.device == device


def _iteration_records(simulated, monkeypatch):
    """What each iteration of stage 1 cost, from one call of stage1_step to the next: the
    step, the loop's bookkeeping and the next batch's gathering and augmentation. An
    iteration that ends an epoch also holds the epoch's end (its loss means are read), its
    checkpoint and the next epoch's start, or stage 2 and evaluation: `epoch_end` marks it."""
    import mgrb.training.stage1 as stage1

    records, open_window = [], []
    real_step, real_epoch = stage1.stage1_step, stage1.Stage1Loop._epoch

    def close():
        while open_window:
            open_window.pop().__exit__(None, None, None)

    def step(*args, **kwargs):
        close()
        window = simulated.window()
        records.append(window.__enter__())
        records[-1].epoch_end = False
        open_window.append(window)
        return real_step(*args, **kwargs)

    def epoch(self, *args, **kwargs):
        done = real_epoch(self, *args, **kwargs)
        records[-1].epoch_end = True
        return done

    monkeypatch.setattr(stage1, "stage1_step", step)
    monkeypatch.setattr(stage1.Stage1Loop, "_epoch", epoch)
    return records, close


@pytest.mark.parametrize("choice", DEVICE_CHOICES)
def test_mgrb_run_trains_every_phase_on_the_device(simulated, monkeypatch, signal_handlers,
                                                   tmp_path, choice):
    """`mgrb run digits_5_1 --device CHOICE`: every phase, both stages, evaluation and
    checkpoints, through the command line, on cuda:0 in the default numerics (fp32 with TF32,
    the original's) and channels-last. The values are
    the simulation's placeholders (no data), so only where the work ran is checked, and that
    no training step makes the host wait: reads come at the epochs' ends only."""
    iterations, close = _iteration_records(simulated, monkeypatch)
    code = main(["run", str(ROOT / "experiments" / "digits_5_1.yaml"), "--device", choice,
                 "--out", str(tmp_path / "run"), "--quiet", "--set", "train.epochs=2",
                 "--set", "train.stage2_epochs=1", "--set", "train.log_every=1000"])
    assert code == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["device"] == "Simulated CUDA device (FakeTensorMode)"
    assert results["numerics"]["precision"] == "tf32" and results["numerics"]["tf32"] is True
    assert results["numerics"]["channels_last"]
    close()
    within = [record for record in iterations if not record.epoch_end]
    assert len(results["phases"]) == 6 and len(within) > 20
    for number, record in enumerate(within):
        assert record.reads == [], (number, record.reads)
        assert record.blocking_copies == [], (number, [c.where for c in record.blocking_copies])
        assert record.backward_calls == 1
    ends = [record for record in iterations if record.epoch_end]
    assert len(ends) == 6 * 2 and all(record.reads for record in ends)  # the loss means
    counts = sorted({record.op_count for record in within})
    print(f"--device {choice}: {len(iterations)} stage-1 iterations; within an epoch "
          f"{counts[0]} to {counts[-1]} ATen ops each (phase 1 without a teacher, later "
          "phases with), no host read, no blocking copy")


def test_a_run_stopped_on_the_device_resumes_there(simulated, monkeypatch, signal_handlers,
                                                   tmp_path):
    """A stop mid-epoch (as Ctrl-C asks): the checkpoint goes through the host copy, and
    `mgrb resume --device cuda` loads it back onto the device, the optimizer's state
    included, and finishes."""
    import mgrb.training.stage1 as stage1
    from mgrb.training.control import STOP_REQUESTED

    real, calls = stage1.stage1_step, []

    def stop_at_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            STOP_REQUESTED.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(stage1, "stage1_step", stop_at_the_fifth)
    folder = tmp_path / "run"
    settings = ["--set", "train.epochs=2", "--set", "train.stage2_epochs=1"]
    assert main(["run", str(ROOT / "experiments" / "digits_5_1.yaml"), "--device", "cuda",
                 "--out", str(folder), "--quiet", *settings]) == 130
    assert not (folder / "results.json").exists()
    monkeypatch.setattr(stage1, "stage1_step", real)
    assert main(["resume", str(folder), "--device", "cuda", "--quiet"]) == 0
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    resumed = next(e for e in events if e["event"] == "resumed")
    assert (resumed["phase"], resumed["stage"], resumed["epoch"]) == (0, "stage1", 0)
    assert json.loads((folder / "results.json").read_text())["device"] == \
        "Simulated CUDA device (FakeTensorMode)"
