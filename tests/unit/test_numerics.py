"""numerics.py on the CPU: what each precision means, strict deterministic mode, torch.compile
kept compiled over every phase of a real run, and torch's settings put back afterwards."""

import json
import os

import pytest
import torch

from mgrb.cli import main
from mgrb.training import numerics
from mgrb.errors import MGRBError
from mgrb.training.models import IncrementalNet, build_backbone
from mgrb.training.numerics import (CUBLAS_WORKSPACE, Compiler, Numerics, applied, compile_cache,
                                    deterministic_refusal, prepare_process)


EXPERIMENT = """\
name: numerics
dataset: {name: digits}
protocol: {initial: 6, increment: 2, memory_total: 200, holdout_fraction: 0.1}
train:
  epochs: 2
  milestones: [1]
  stage2_epochs: 2
  batch_size: 64
method: {losses: ce+distill+hierloss, beta: 20, scale: 0.5}
hierarchy: {kind: vis, clusters: 2}
"""


@pytest.mark.parametrize("device, precision, deterministic, described, channels_last", [
    ("cpu", "auto", False, "fp32", False),
    ("cuda", "auto", False, "tf32", True),     # the original's numerics: TF32 on, as torch 1.10
    ("cuda", "auto", True, "fp32", True),      # strict determinism keeps TF32 off
    ("cuda", "fp32", False, "fp32", True),
    ("cuda", "tf32", False, "tf32", True),
    ("cpu", "tf32", False, "fp32", False),     # no TF32 on a CPU
    ("cuda", "bf16", False, "bf16", True),     # the fast mode, only when asked for
    ("cpu", "bf16", False, "bf16", False)])
def test_precision_resolves_by_device(device, precision, deterministic, described, channels_last):
    numerics = Numerics.resolve(torch.device(device), precision=precision,
                                deterministic=deterministic)
    record = numerics.describe()
    assert (record["precision"], numerics.channels_last) == (described, channels_last)
    assert numerics.bf16 == (described == "bf16") and record["tf32"] == (described == "tf32")
    assert record["logits_and_losses"] == "float32"
    assert numerics.fused_optimizer == (device == "cuda")
    if precision == "auto" and deterministic:
        assert "TF32 off" in record["precision_choice"]


def test_tf32_is_allowed_for_the_run_where_resolved_and_put_back():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with applied(Numerics.resolve(torch.device("cuda"), precision="auto")):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_bf16_logits_come_out_fp32_from_an_fp32_classifier():
    torch.manual_seed(0)
    net = IncrementalNet(build_backbone("resnet_small", 1), 10).eval()
    x = torch.randn(64, 1, 8, 8)
    numerics = Numerics.resolve(torch.device("cpu"), precision="bf16")
    with torch.no_grad():
        logits = numerics.logits(net.backbone, net.classifier, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = net.backbone(x)
        assert features.dtype == torch.bfloat16  # the backbone did run in bf16
        expected = net.classifier(features.float())
        bf16_head = torch.autocast("cpu", dtype=torch.bfloat16)
        with bf16_head:
            old_style = net.classifier(features)
    assert logits.dtype == torch.float32
    assert torch.equal(logits, expected)
    assert old_style.dtype == torch.bfloat16  # what a classifier under autocast gave before


def test_tf32_and_determinism_are_set_for_the_run_and_put_back():
    torch.backends.cudnn.allow_tf32 = True
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    numerics = Numerics.resolve(torch.device("cpu"), deterministic=True)
    with applied(numerics):
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # strict, not a warning
    assert torch.backends.cudnn.allow_tf32 is True
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_an_operation_without_a_deterministic_kernel_stops_the_block_naming_it():
    numerics = Numerics.resolve(torch.device("cpu"), deterministic=True)
    with pytest.raises(MGRBError, match=r"put_ has no deterministic implementation on this "
                                        r"device \(cpu\)") as raised:
        with applied(numerics):
            torch.zeros(4).put_(torch.tensor([0]), torch.tensor([1.0]))  # flagged on the CPU too
    assert "train.deterministic: false" in str(raised.value)
    assert not torch.are_deterministic_algorithms_enabled()
    assert deterministic_refusal(RuntimeError("CUDA out of memory"), "cuda") is None


def test_a_run_in_deterministic_mode_refuses_such_an_operation(tmp_path, monkeypatch, capsys):
    """Through the real entry point: a backbone that calls an operation PyTorch flags (put_,
    flagged on the CPU as well) ends the run with exit 2 and the operation's name."""
    from mgrb.training import models

    forward = models.ResNet.forward

    def flagged_forward(self, x):
        torch.zeros(2, device=x.device).put_(torch.tensor([0], device=x.device),
                                             torch.tensor([1.0], device=x.device))
        return forward(self, x)

    monkeypatch.setattr(models.ResNet, "forward", flagged_forward)
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu",
                 "--set", "train.deterministic=true"])
    err = capsys.readouterr().err
    assert code == 2 and "put_ has no deterministic implementation" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "results.json").exists()


def test_the_cublas_workspace_is_set_at_process_entry(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    prepare_process(deterministic=False)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    prepare_process(deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other deterministic value stays
    prepare_process(deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_compile_without_a_compiler_on_path_is_refused_plainly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(MGRBError, match="needs a C\\+\\+ compiler on PATH"):
        Compiler(True, "cpu")
    Compiler(False, "cpu")  # no compile, no compiler needed


@pytest.mark.parametrize("setting, device, compilers, expected", [
    ("auto", "cuda", True, (True, "auto: on (CUDA, C compiler cc)")),
    ("auto", "cuda", False, (False, "auto: off, no C compiler on PATH for Triton")),
    ("auto", "cpu", True, (False, "auto: off on the CPU")),
    (True, "cpu", True, (True, "set: true")), (False, "cuda", True, (False, "set: false"))])
def test_compile_is_on_by_default_on_a_gpu_with_a_compiler(tmp_path, monkeypatch, setting, device,
                                                           compilers, expected):
    """The device is only a name here: nothing runs on it."""
    if compilers:
        (tmp_path / "cc").write_text("#!/bin/sh\n")
        (tmp_path / "cc").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    numerics = Numerics.resolve(torch.device(device), compile=setting)
    assert (numerics.compile, numerics.compile_choice) == expected
    assert numerics.describe()["compile_choice"] == expected[1]


def test_compile_stays_compiled_over_every_phase(tmp_path, capsys):
    """A real digits run with train.compile: the backbone's graphs are compiled in the first
    phases and serve every later one (a new teacher and a larger classifier included); torch's
    counters show no fallback to eager, and the run records them."""
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--device", "cpu",
                 "--set", "train.compile=true"]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    report = results["compile"]
    assert report["enabled"] and report["fallbacks_to_eager"] == 0 and report["graph_breaks"] == 0
    # student in training, student evaluating, the frozen teacher: one graph each at most,
    # plus one for a batch-size specialisation; far under the recompile limit
    assert 1 <= report["graphs"] <= 4 < report["recompile_limit"]
    per_phase = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    per_phase = [e for e in per_phase if e["event"] == "compile"]
    assert [e["phase"] for e in per_phase] == [0, 1, 2]
    assert per_phase[1]["graphs"] == per_phase[2]["graphs"]  # the last phase compiled nothing
    assert results["numerics"]["compile"] is True
    assert all(0 <= p["top1"] <= 100 for p in results["phases"])


def test_a_runs_folder_that_cannot_hold_the_compile_cache_leaves_torchs_default(tmp_path):
    """As for a container's user given only its run folder (the launcher's Docker mode run by
    root): the run must not fail for a cache it could do without."""
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / ".cache").write_text("a file where the folder would go")
    assert compile_cache(tmp_path / "blocked") == {}
    assert compile_cache(tmp_path / "open") == {
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "open" / ".cache" / "inductor"),
        "TRITON_CACHE_DIR": str(tmp_path / "open" / ".cache" / "triton")}


def test_a_compiling_run_shares_its_cache_and_others_leave_the_runs_folder_alone(
        tmp_path, capsys, monkeypatch):
    """Only a run that compiles points the caches into the runs folder: a CPU run (auto: no
    compiling) must not leave a .cache folder among the run folders, which `mgrb check
    runs/*`-style listings would take for a run."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("MGRB_RUNS", str(runs))
    monkeypatch.setattr(numerics, "_SET_BY_USER", frozenset())
    path = tmp_path / "e.yaml"
    path.write_text(EXPERIMENT)
    assert main(["run", str(path), "--out", str(runs / "run"), "--quiet", "--device", "cpu",
                 "--set", "train.epochs=1", "--set", "train.stage2_epochs=0"]) == 0, \
        capsys.readouterr().err
    assert sorted(p.name for p in runs.iterdir()) == ["run"]
    chosen = numerics.share_compile_cache(runs / "run")
    assert chosen == {"TORCHINDUCTOR_CACHE_DIR": str(runs / ".cache" / "inductor"),
                      "TRITON_CACHE_DIR": str(runs / ".cache" / "triton")}
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == chosen["TORCHINDUCTOR_CACHE_DIR"]
    outside = numerics.share_compile_cache(tmp_path / "elsewhere" / "run")  # --out elsewhere
    assert outside["TRITON_CACHE_DIR"] == str(tmp_path / "elsewhere" / ".cache" / "triton")


def test_the_users_own_cache_settings_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("MGRB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRITON_CACHE_DIR", "/mine")
    monkeypatch.setattr(numerics, "_SET_BY_USER", frozenset({"TRITON_CACHE_DIR"}))
    assert set(numerics.share_compile_cache(tmp_path / "runs" / "x")) == {"TORCHINDUCTOR_CACHE_DIR"}
    assert os.environ["TRITON_CACHE_DIR"] == "/mine"
