"""`make gpu-check`: the one command that proves the GPU path, on the machine it runs on.

    PYTHONPATH=. python -m benchmarks.gpu_check [--only a,b,...] [--budget-s SECONDS]

needs only torch, numpy and PyYAML: where `make setup` cannot run,
as on a lent GPU machine without a package registry, this is the command. A check whose
modules are missing (the bench's reference style needs torchvision and Pillow) is skipped
and says why.

Every step goes through the real entry points (`mgrb run` processes, `make bench`'s script),
on a CIFAR-100-shaped data set written in torchvision's pickle layout (synthetic_cifar.py):
  a. 3 phases, both stages, in the default numerics (tf32, the original's) and the bf16 fast
     mode, torch.compile off and on: every run finishes, learns, records the numerics it was
     asked for, and compiles without falling back; then how far the two modes' top-1 lie apart;
  b. deterministic mode twice: identical accuracies, to the last digit of every class;
  c. deterministic mode killed with SIGKILL mid-run (mid-epoch checkpoints every few batches),
     then resumed: identical to (b);
  d. the bench table: fast path against the original-style pipeline, model FLOP/s and the
     share of the bf16 peak, 1 and 2 runs packed;
  e. an NVML reading of this machine, in the shapes the launcher's tests replay;
  f. no host sync inside a mid-epoch fast-path step (from the bench, CUDA's sync debug mode);
  g. the tf32 run of (a) under `mgrb run --nproc 2` (two GPUs with NCCL; skipped with fewer;
     gloo on the CPU): two processes, top-1 near the one-process run's in every phase.
b and c run together, and so do d and f. On a GPU the sizes are a few thousand images,
ResNet-34 (ResNet-18 for b and c, whose checkpoints come every few batches): under 8 minutes
on one H100 by the estimate of gpu_check_time.py, printed before the checks start, with each
check's own time after it. Without CUDA the same steps run on the CPU at a small size, which
proves the script and the CPU path only: the summary says plainly that no GPU was measured.

Writes <out>/gpu-check-<device>.json and .md (default benchmarks/results/) after every check,
so a call that is killed keeps what finished; with --only, the checks run now replace theirs
in the files and the others' results stay (a capped machine can split the work over calls).
On a GPU, also <nvml-out>/nvml_recorded.json (default tests/data/). Exit 0 when no check
failed (skipped ones, for a missing module or the budget, are listed as such).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.synthetic_cifar import write_cifar100
from mgrb.perf.throughput import file_name

ROOT = Path(__file__).resolve().parents[1]

CHANCE_PHASE_1 = 100 / 60  # top-1 % of a guess among the first phase's 60 classes
PROFILES = {
    "cuda": {"train_per_class": 40, "test_per_class": 10, "backbone": "resnet34", "epochs": 3,
             "milestones": [2], "stage2_epochs": 2, "batch_size": 128, "memory_total": 2000,
             "learned": 3.0, "parallel": True, "timeout": 400,
             # b and c: a smaller network and a checkpoint every 0.6 s rather than every
             # batch: each is 180 MB (ResNet-34's would be 340 MB), hashed and written
             "determinism_backbone": "resnet18", "kill_checkpoint_minutes": 0.01,
             "bench": ["--steps", "100", "--pack-runs", "1,2", "--pack-seconds", "5"],
             "bench_images": {"fast": 20000 + 160 * 128, "reference": 27 * 128,
                              "imagenet": 3264 + 60 * 128, "pack_warm": 20000}},
    "cpu": {"train_per_class": 12, "test_per_class": 3, "backbone": "resnet_small", "epochs": 2,
            "milestones": [1], "stage2_epochs": 1, "batch_size": 32, "memory_total": 1000,
            "learned": 2.0, "parallel": False, "timeout": 600,
            "determinism_backbone": "resnet_small", "kill_checkpoint_minutes": 0.002,
            "bench": ["--batch", "2", "--steps", "1", "--pack", "yes", "--pack-runs", "1,2",
                      "--pack-seconds", "0.5"],
            "bench_images": {"fast": 40, "reference": 4, "imagenet": 0, "pack_warm": 9}},
}
# tf32: the default on a GPU (`precision: auto`, the original's numerics); bf16: the fast mode
MATRIX = [("tf32", False), ("bf16", False), ("tf32", True), ("bf16", True)]
# a: top-1 of the tf32 and bf16 runs, phase by phase, further apart than this says one is broken
# (a few epochs of a few thousand images: seed-like noise of several points is expected)
AGREEMENT_POINTS = 15.0


def child_env() -> dict:
    """This checkout's mgrb for the child processes, installed or not."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def say(text: str) -> None:
    print(text, flush=True)


def experiment(name: str, data: Path, profile: dict, backbone: str | None = None, **train) -> dict:
    return {
        "name": name, "description": "make gpu-check: synthetic CIFAR-100 shapes",
        "dataset": {"name": "cifar100", "root": str(data), "download": False},
        "protocol": {"initial": 60, "increment": 20, "memory_total": profile["memory_total"]},
        "model": {"backbone": backbone or profile["backbone"]},
        "train": {"epochs": profile["epochs"], "milestones": profile["milestones"],
                  "stage2_epochs": profile["stage2_epochs"], "stage2_milestones": [1],
                  "batch_size": profile["batch_size"], "log_every": 5, "checkpoint_every": 1,
                  **train},
        "hierarchy": {"kind": "ont"},
    }


class Runs:
    """`mgrb run` processes of this check, one folder each under `work`. None outlives
    `deadline` (time.monotonic(); the --budget-s) nor runs longer than `timeout` seconds."""

    def __init__(self, work: Path, device: str, timeout: float, deadline: float = float("inf")):
        self.work, self.device, self.timeout, self.deadline = work, device, timeout, deadline

    def time_left(self) -> float:
        return max(0.0, min(self.timeout, self.deadline - time.monotonic()))

    def start(self, config: dict, label: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        import yaml

        path = self.work / f"{label}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        log = open(self.work / f"{label}.log", "ab")  # noqa: SIM115 - closed in finish()
        process = subprocess.Popen(
            [sys.executable, "-m", "mgrb.cli", "run", str(path), "--out", str(self.folder(label)),
             "--device", self.device, *extra], stdout=log, stderr=subprocess.STDOUT,
            env=child_env())
        process.log = log
        return process

    def folder(self, label: str) -> Path:
        return self.work / "runs" / label

    def finish(self, process: subprocess.Popen, label: str) -> dict:
        """The run's outcome: its exit status, its results, the end of its output; a run still
        going when its time is up is killed and its outcome says so."""
        waited, timed_out = self.time_left(), False
        try:
            code = process.wait(timeout=waited)
        except subprocess.TimeoutExpired:
            process.kill()
            code, timed_out = process.wait(), True
        process.log.close()
        results = self.folder(label) / "results.json"
        tail = (self.work / f"{label}.log").read_text(errors="replace").strip().splitlines()[-3:]
        if timed_out:
            tail.append(f"killed: still running after {waited:.0f} s (its time limit)")
        return {"label": label, "code": code, "timed_out": timed_out,
                "results": json.loads(results.read_text()) if results.exists() and not timed_out
                else None, "output_tail": tail}

    def run_all(self, jobs: list[tuple[str, dict]], parallel: bool) -> dict[str, dict]:
        if parallel:  # on a GPU several small runs share it, as packed runs do
            started = [(label, self.start(config, label)) for label, config in jobs]
            return {label: self.finish(process, label) for label, process in started}
        return {label: self.finish(self.start(config, label), label) for label, config in jobs}


def phases_of(results: dict | None):
    """What must be identical between two runs of one experiment: every phase's accuracies."""
    if results is None:
        return None
    keys = ("top1", "top5", "old_top1", "new_top1", "per_class_top1")
    return [{key: phase[key] for key in keys} for phase in results["phases"]]


def check(name: str, ok: bool, detail: str, announce: bool = True, **data) -> dict:
    if announce:
        say(f"  [{'pass' if ok else 'FAIL'}] {name}: {detail}")
    return {"check": name, "ok": bool(ok), "status": "pass" if ok else "FAIL", "detail": detail,
            **data}


def skipped(name: str, reason: str) -> dict:
    """A check not run: not a failure, and the results say why."""
    say(f"  [skip] {name}: {reason}")
    return {"check": name, "ok": None, "status": "skip", "detail": reason}


# -- a. the numerics matrix --------------------------------------------------------------------
def numerics_matrix(runs: Runs, data: Path, profile: dict, on_gpu: bool) -> list[dict]:
    jobs = [(f"{precision}-compile-{'on' if compiled else 'off'}",
             experiment(f"gpu_check_{precision}_{int(compiled)}", data, profile,
                        precision=precision, compile=compiled))
            for precision, compiled in MATRIX]
    outcomes = runs.run_all(jobs, profile["parallel"])
    judged = [judge_run(f"a. {label}", outcomes[label], precision=precision, compiled=compiled,
                        on_gpu=on_gpu, learned=profile["learned"])
              for (label, _), (precision, compiled) in zip(jobs, MATRIX)]
    return judged + [agreement(judged)]


def agreement(judged: list[dict]) -> dict:
    """How far apart the default numerics (tf32) and the bf16 fast mode land, phase by phase,
    with compiling off and on."""
    by_label = {entry["check"]: entry.get("top1") for entry in judged}
    gaps = []
    for compiled in ("off", "on"):
        tf32, bf16 = by_label.get(f"a. tf32-compile-{compiled}"), by_label.get(f"a. bf16-compile-{compiled}")
        if not tf32 or not bf16 or len(tf32) != len(bf16):
            return check("a. tf32 and bf16 agree", False, f"compile {compiled}: a run is missing")
        gaps += [abs(a - b) for a, b in zip(tf32, bf16)]
    detail = (f"top-1 differs by at most {max(gaps):.2f} points over the phases (mean "
              f"{sum(gaps) / len(gaps):.2f}; bound {AGREEMENT_POINTS:g})")
    return check("a. tf32 and bf16 agree", max(gaps) <= AGREEMENT_POINTS, detail,
                 max_gap=max(gaps), mean_gap=sum(gaps) / len(gaps))


def judge_run(name: str, outcome: dict, *, precision: str, compiled: bool, on_gpu: bool,
              learned: float, announce: bool = True) -> dict:
    """One matrix run: it finished, with the numerics asked for, compiled without falling
    back, on the GPU when there is one, and learned (phase 1 well above chance)."""
    results = outcome["results"]
    if outcome["code"] != 0 or results is None:
        return check(name, False, f"exit {outcome['code']}: {' / '.join(outcome['output_tail'])}",
                     announce)
    problems = []
    top1 = [phase["top1"] for phase in results["phases"]]
    if len(top1) != 3:
        problems.append(f"{len(top1)} phases, not 3")
    if precision == "tf32" and not on_gpu:
        precision = "fp32"  # no TF32 on a CPU: numerics.py records fp32
    if results["numerics"]["precision"] != precision:
        problems.append(f"ran in {results['numerics']['precision']}")
    report = results["compile"]
    if report["enabled"] != compiled:
        problems.append(f"compile {'on' if report['enabled'] else 'off'}")
    if compiled and (report.get("fallbacks_to_eager") or report.get("graph_breaks")):
        problems.append(f"compile fell back to eager {report['fallbacks_to_eager']} times, "
                        f"{report['graph_breaks']} graph breaks")
    if on_gpu and not str(results.get("device_uuid") or "").startswith(("GPU-", "MIG-")):
        problems.append(f"trained on {results['device']}, not a GPU")
    if top1 and top1[0] < learned * CHANCE_PHASE_1:
        problems.append(f"phase 1 top-1 {top1[0]:.2f}% is not above chance "
                        f"({CHANCE_PHASE_1:.2f}%): it did not learn")
    detail = (f"top-1 by phase {', '.join(f'{t:.2f}' for t in top1)}; "
              f"{results['wall_time_s']:.0f} s"
              + (f"; {report['graphs']} graphs compiled" if compiled else ""))
    return check(name, not problems, "; ".join(problems) or detail, announce, top1=top1,
                 wall_time_s=results["wall_time_s"], compile=report,
                 numerics=results["numerics"], device=results["device"])


# -- g. one run over two processes ---------------------------------------------------------
NPROC_TOLERANCE = 3.0  # points of top-1 per phase: float sums in another order, nothing more


def two_processes(runs: Runs, data: Path, profile: dict, matrix: list[dict], on_gpu: bool,
                  gpus: int) -> list[dict]:
    """The matrix's tf32 run (the default numerics) again under `mgrb run --nproc 2` (NCCL
    on two GPUs, gloo on the CPU): it finishes as two processes and lands near the one-process
    run in every phase."""
    if on_gpu and gpus < 2:
        return [skipped("g. tf32, --nproc 2", f"{gpus} GPU here; it needs two")]
    config = experiment("gpu_check_tf32_0", data, profile, precision="tf32", compile=False)
    outcome = runs.finish(runs.start(config, "nproc-2", ("--nproc", "2")), "nproc-2")
    judged = judge_run("g. tf32, --nproc 2", outcome, precision="tf32", compiled=False,
                       on_gpu=on_gpu, learned=profile["learned"], announce=False)
    reference = next((c for c in matrix if c["check"] == "a. tf32-compile-off"), None)
    if reference is None:  # (a) did not run in this call: its tf32 run, as one process
        reference = judge_run("a. tf32-compile-off", runs.finish(runs.start(config, "nproc-1"),
                                                                 "nproc-1"),
                              precision="tf32", compiled=False, on_gpu=on_gpu,
                              learned=profile["learned"], announce=False)
    if not (judged["ok"] and reference["ok"]):
        return [check(judged["check"], False, judged["detail"] if not judged["ok"] else
                      f"the one-process run to compare with failed: {reference['detail']}")]
    processes = outcome["results"]["numerics"].get("processes")
    gaps = [abs(a - b) for a, b in zip(judged["top1"], reference["top1"])]
    ok = processes == 2 and max(gaps) <= NPROC_TOLERANCE
    return [check("g. tf32, --nproc 2", ok,
                  f"{processes} processes; top-1 by phase "
                  f"{', '.join(f'{t:.2f}' for t in judged['top1'])} against one process's "
                  f"{', '.join(f'{t:.2f}' for t in reference['top1'])}; "
                  f"{judged['wall_time_s']:.0f} s against {reference['wall_time_s']:.0f} s",
                  top1=judged["top1"], wall_time_s=judged["wall_time_s"], processes=processes)]


# -- b and c. determinism, and a resume after SIGKILL ----------------------------------------
def determinism(runs: Runs, data: Path, profile: dict) -> list[dict]:
    config = experiment("gpu_check_deterministic", data, profile,
                        backbone=profile["determinism_backbone"], deterministic=True)
    killed_config = {**config, "train": {**config["train"],
                                         "checkpoint_minutes": profile["kill_checkpoint_minutes"]}}
    if profile["parallel"]:
        first, second = runs.start(config, "deterministic-1"), runs.start(config, "deterministic-2")
        killed = kill_mid_run(runs, killed_config)
        outcomes = [runs.finish(first, "deterministic-1"), runs.finish(second, "deterministic-2")]
    else:
        outcomes = [runs.finish(runs.start(config, label), label)
                    for label in ("deterministic-1", "deterministic-2")]
        killed = kill_mid_run(runs, killed_config)
    resumed = runs.finish(runs.start(killed_config, "killed"), "killed")
    a, b = (phases_of(outcome["results"]) for outcome in outcomes)
    c = phases_of(resumed["results"])
    checks = [check("b. deterministic twice", a is not None and a == b,
                    "identical accuracies in every phase and class" if a is not None and a == b
                    else _difference(outcomes[0], outcomes[1], a, b))]
    checks.append(check("c. SIGKILL mid-run, then resume", killed["killed"] and c is not None
                        and c == a,
                        _resume_detail(killed, resumed, a, c), killed_at=killed["at"]))
    return checks


def kill_mid_run(runs: Runs, config: dict) -> dict:
    """Start the run and SIGKILL it once it trains phase 2 and has checkpointed in it."""
    process = runs.start(config, "killed")
    events = runs.folder("killed") / "events.jsonl"
    deadline = time.monotonic() + runs.time_left()
    marker = '"event": "checkpoint", "phase": 1, "stage": "stage1"'
    while process.poll() is None and time.monotonic() < deadline:
        text = events.read_text() if events.exists() else ""
        if marker in text:
            break
        time.sleep(0.05)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    process.log.close()
    lines = events.read_text().splitlines() if events.exists() else []
    return {"killed": killed, "at": json.loads(lines[-1]) if lines else None}


def _difference(first: dict, second: dict, a, b) -> str:
    if a is None or b is None:
        failed = first if a is None else second
        return f"{failed['label']} did not finish (exit {failed['code']}: " \
               f"{' / '.join(failed['output_tail'])})"
    for number, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"phase {number + 1} differs: top-1 {x['top1']} against {y['top1']}"
    return "the runs differ"


def _resume_detail(killed: dict, resumed: dict, reference, after) -> str:
    if not killed["killed"]:
        return "the run ended before it could be killed"
    if after is None:
        return f"the resumed run did not finish (exit {resumed['code']}: " \
               f"{' / '.join(resumed['output_tail'])})"
    at = killed["at"] or {}
    where = f"killed after phase {at.get('phase', 0) + 1}'s {at.get('event')} event"
    return f"{where}; resumed: " + ("identical to the uninterrupted runs" if after == reference
                                    else "DIFFERENT from the uninterrupted runs")


# -- d and f. the bench ----------------------------------------------------------------------
def bench(work: Path, device: str, profile: dict, time_left: float) -> tuple[list[dict], dict | None]:
    runs_dir = work / "bench"
    command = [sys.executable, "-m", "benchmarks.bench_step", "--device", device,
               "--runs-dir", str(runs_dir), *profile["bench"]]
    try:
        code = subprocess.run(command, timeout=time_left, env=child_env(), cwd=ROOT).returncode
    except subprocess.TimeoutExpired:
        return [check("d. bench", False, f"bench_step.py still running after {time_left:.0f} s "
                      "(its time limit); killed")], None
    found = sorted((runs_dir / ".bench").glob("*.json"))
    table = json.loads(found[0].read_text()) if found else None
    if code != 0 or table is None:
        return [check("d. bench", False, f"bench_step.py exited {code}")], table
    packed = table.get("packed_images_per_s") or {}
    reference = (f"reference {table['reference_images_per_s']:.1f}, ratio {table['ratio']:.1f}x"
                 if table.get("reference_images_per_s") else
                 f"reference style not measured ({table.get('reference_skipped')})")
    detail = (f"fast {table['fast_images_per_s']:.1f} images/s, {reference}, "
              f"{table['model_tflops']:.3g} TFLOP/s"
              + (f" ({100 * table['peak_fraction']:.1f}% of peak)" if table["peak_fraction"] else "")
              + (f"; packed {', '.join(f'{n}: {r:.0f}' for n, r in packed.items())}" if packed else ""))
    checks = [check("d. bench", True, detail)]
    if device == "cuda":
        syncs = table["host_syncs_in_step"]
        checks.append(check("f. no host sync in a mid-epoch step", syncs == "none", syncs))
    return checks, table


# -- e. NVML -------------------------------------------------------------------------------
def nvml_reading(nvml=None) -> dict | None:
    """This machine's GPUs in the shapes tests/artifact_helpers.ReplayedNvml replays, or None
    when NVML is not there (no driver, no nvidia-ml-py)."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any NVML failure means: nothing to record
        return None
    try:
        devices = [_nvml_device(nvml, nvml.nvmlDeviceGetHandleByIndex(index))
                   for index in range(nvml.nvmlDeviceGetCount())]
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    finally:
        nvml.nvmlShutdown()
    return {"_note": f"Recorded by `make gpu-check` on {platform.node() or 'a GPU machine'}, "
                     f"driver {driver}, {time.strftime('%Y-%m-%d', time.gmtime())}. Power in mW, "
                     "memory in bytes; null marks a metric NVML does not support here.",
            "devices": devices}


def _nvml_device(nvml, handle) -> dict:
    def read(call, convert=lambda value: value):
        try:
            return convert(call())
        except nvml.NVMLError:
            return None

    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    device = {"uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
              "name": _text(nvml.nvmlDeviceGetName(handle)),
              "utilization_gpu": read(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
              "memory_used": int(memory.used), "memory_total": int(memory.total),
              "temperature": read(lambda: nvml.nvmlDeviceGetTemperature(
                  handle, nvml.NVML_TEMPERATURE_GPU)),
              "power_mw": read(lambda: nvml.nvmlDeviceGetPowerUsage(handle)),
              "power_limit_mw": read(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle)),
              "pids": read(lambda: [int(p.pid) for p in
                                    nvml.nvmlDeviceGetComputeRunningProcesses(handle)]) or []}
    mode = read(lambda: list(nvml.nvmlDeviceGetMigMode(handle)))
    if mode is not None:
        device["mig_mode"] = mode
    return device


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the whole check -------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """Checks that run together, named by their letters (--only takes any of them)."""

    letters: str
    title: str
    needs: tuple[str, ...] = ()  # modules, by import name


UNITS = (Unit("a", "tf32 (default) and bf16, compile off and on, 3 phases, both stages"),
         Unit("g", "the tf32 run over two processes (DistributedDataParallel)"),
         Unit("bc", "deterministic mode twice; killed with SIGKILL and resumed"),
         Unit("df", "the bench table (benchmarks/bench_step.py)"),
         Unit("e", "an NVML reading of this machine", needs=("pynvml",)))
LETTERS = "".join(unit.letters for unit in UNITS)


def only_letters(text: str) -> str:
    letters = {part.strip() for part in text.split(",") if part.strip()}
    unknown = letters - set(LETTERS)
    if not letters or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: expected check letters among "
                                         f"{', '.join(sorted(LETTERS))}, such as a,c")
    return "".join(sorted(letters))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--only", type=only_letters, metavar="a,b,...",
                        help="run these checks only (b and c go together, as d and f do); the "
                        "results files keep the other checks' earlier results")
    parser.add_argument("--budget-s", type=float, metavar="SECONDS",
                        help="start no check that its estimate says would end past this many "
                        "seconds, and stop any run still going then")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="where gpu-check-<device>.json and .md go")
    parser.add_argument("--nvml-out", type=Path, default=ROOT / "tests" / "data",
                        help="where a GPU's NVML reading goes (nvml_recorded.json)")
    parser.add_argument("--keep", type=Path, help="keep the runs and logs in this folder")
    args = parser.parse_args(argv)
    if args.budget_s is not None and args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    return args


def estimates(profile: dict, on_gpu: bool, gpus: int, letters: str) -> dict[str, float]:
    """Seconds each unit should take here (gpu_check_time.py: FLOPs, checkpoint bytes and the
    rates it states)."""
    from benchmarks import gpu_check_time as timing

    rates = timing.H100 if on_gpu else timing.TWO_CORE_CPU
    data, tpc, test = Path("/gpu-check"), profile["train_per_class"], profile["test_per_class"]
    matrix = [(timing.run_work(experiment("x", data, profile, precision=p, compile=c), tpc, test),
               p, c) for p, c in MATRIX]
    kind = {"fp32": "fp32", "tf32": "tf32" if on_gpu else "fp32",
            "bf16": "bf16" if on_gpu else "fp32"}
    runs = [timing.run_seconds(work, rates, kind[p], compiled=c) for work, p, c in matrix]
    starts = [rates.process_start_s + (rates.compile_s if c else 0) for _, _, c in matrix]
    seconds = {"a": max(starts) + sum(r - s for r, s in zip(runs, starts))
               if profile["parallel"] else sum(runs)}
    single = runs[0] * (1 if "a" in letters else 2)  # g runs its own reference without a
    seconds["g"] = 0.0 if on_gpu and gpus < 2 else 1.3 * single
    work = timing.run_work(experiment("x", data, profile, backbone=profile["determinism_backbone"]),
                           tpc, test)
    compute = work["flops"] / (rates.tflops["deterministic"] * 1e12)
    timed = int(compute / (60 * profile["kill_checkpoint_minutes"]))  # the killed run's extras
    run = timing.run_seconds(work, rates, "deterministic")
    killed = timing.run_seconds(work, rates, "deterministic", extra_checkpoints=timed)
    seconds["bc"] = (max(run, killed) + 2 * compute if profile["parallel"] else 2 * run + killed) \
        + killed  # the resumed run
    images = profile["bench_images"]
    bench_args = dict(zip(profile["bench"][::2], profile["bench"][1::2]))
    seconds["df"] = timing.bench_seconds(
        rates, fast_images=images["fast"], reference_images=images["reference"],
        imagenet_images=images["imagenet"],
        pack_runs=tuple(int(n) for n in bench_args.get("--pack-runs", "1,2,4").split(",")),
        pack_seconds=float(bench_args.get("--pack-seconds", 30)), pack_warm_images=images["pack_warm"])
    seconds["e"] = 2.0 if on_gpu else 0.0
    return {unit.letters: round(seconds[unit.letters], 1) for unit in UNITS
            if set(unit.letters) & set(letters)}


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: error: --device cuda, but PyTorch sees no CUDA device", file=sys.stderr)
        return 2
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        # its finished runs would be taken for this check's: a stale result passing as new
        print(f"gpu-check: error: --keep {args.keep}: the folder is not empty; give a new one",
              file=sys.stderr)
        return 2
    on_gpu = device == "cuda"
    name = torch.cuda.get_device_name(0) if on_gpu else f"CPU {platform.machine()}"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"gpu-check: error: {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    say(f"gpu-check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})"
        + ("" if on_gpu else ": NO GPU HERE. The same steps run on the CPU at a small size; "
                             "they prove the script and the CPU path, and measure no GPU."))
    work = Path(args.keep or tempfile.mkdtemp(prefix="mgrb-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run_checks(work, device, name, torch, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [c["check"] for c in report["checks"] if c["ok"] is False]
    passed = [c for c in report["checks"] if c["ok"]]
    left_out = [c["check"] for c in report["checks"] if c["ok"] is None]
    say(f"{len(passed)} checks passed, {len(failed)} failed, {len(left_out)} skipped in "
        f"{report['seconds']:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else "")
        + ("" if on_gpu else ". No GPU was measured."))
    say("written: " + ", ".join(str(p) for p in report["paths"]))
    return 1 if failed else 0


def run_checks(work: Path, device: str, name: str, torch, args) -> dict:
    """Every selected unit in turn, the results files rewritten after each."""
    profile, on_gpu = PROFILES[device], device == "cuda"
    gpus = torch.cuda.device_count() if on_gpu else 0
    letters = args.only or LETTERS
    started = time.monotonic()
    deadline = started + args.budget_s if args.budget_s else float("inf")
    planned = estimates(profile, on_gpu, gpus, letters)
    say(f"estimated {sum(planned.values()):.0f} s on {'one H100' if on_gpu else 'a two-core CPU'}"
        f" (benchmarks/gpu_check_time.py): "
        + ", ".join(f"{key} {value:.0f} s" for key, value in planned.items())
        + (f"; budget {args.budget_s:.0f} s" if args.budget_s else ""))
    report = {"device": name, "device_type": device, "gpu_measured": on_gpu,
              "torch": torch.__version__, "cuda": torch.version.cuda,
              "host": platform.node(), "python": platform.python_version(),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "profile": {k: v for k, v in profile.items() if k not in ("bench", "bench_images")},
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "complete": False, "estimated_s": planned, "unit_seconds": {}, "checks": [],
              "bench": None, "nvml_devices": 0,
              "c_compiler": shutil.which("cc") or shutil.which("gcc")}
    earlier = earlier_checks(args.out, name, letters) if args.only else []
    data = work / "data"
    write_cifar100(data, train_per_class=profile["train_per_class"],
                   test_per_class=profile["test_per_class"])
    runs = Runs(work, device, profile["timeout"], deadline)
    (work / "runs").mkdir(exist_ok=True)
    for unit in UNITS:
        if not set(unit.letters) & set(letters):
            continue
        say(f"{', '.join(unit.letters)}. {unit.title}:")
        began, left = time.monotonic(), deadline - time.monotonic()
        from benchmarks.bench_step import importable

        missing = [module for module in unit.needs if not importable(module)]
        if missing:
            checks = [skipped(f"{letter}.", f"needs {', '.join(missing)}, not installed here")
                      for letter in unit.letters]
        elif planned[unit.letters] > left:
            checks = [skipped(f"{letter}.", f"not started: estimated {planned[unit.letters]:.0f} s, "
                              f"{max(left, 0):.0f} s of --budget-s {args.budget_s:.0f} left")
                      for letter in unit.letters]
        else:
            checks = run_unit(unit, runs, data, profile, report, gpus, args)
        report["checks"] += checks
        report["unit_seconds"][unit.letters] = round(time.monotonic() - began, 1)
        say(f"  [{unit.letters}: {time.monotonic() - began:.0f} s, estimated "
            f"{planned[unit.letters]:.0f} s; {time.monotonic() - started:.0f} s so far]")
        report["seconds"] = round(time.monotonic() - started, 1)
        report["paths"] = write_report(report, earlier, args.out)
    report["complete"] = not any(c["ok"] is None and c["detail"].startswith("not started")
                                 for c in report["checks"])
    report["seconds"] = round(time.monotonic() - started, 1)
    report["paths"] = write_report(report, earlier, args.out)
    return report


def run_unit(unit: Unit, runs: Runs, data: Path, profile: dict, report: dict, gpus: int,
             args) -> list[dict]:
    on_gpu = report["device_type"] == "cuda"
    if unit.letters == "a":
        return numerics_matrix(runs, data, profile, on_gpu)
    if unit.letters == "g":
        return two_processes(runs, data, profile, report["checks"], on_gpu, gpus)
    if unit.letters == "bc":
        return determinism(runs, data, profile)
    if unit.letters == "df":
        checks, report["bench"] = bench(runs.work, report["device_type"], profile,
                                        runs.time_left())
        return checks
    if not on_gpu:
        return [skipped("e. NVML reading", "no GPU")]
    reading = nvml_reading()
    if reading is None:
        return [skipped("e. NVML reading", "NVML could not be read")]
    args.nvml_out.mkdir(parents=True, exist_ok=True)
    recorded = args.nvml_out / "nvml_recorded.json"
    recorded.write_text(json.dumps(reading, indent=2) + "\n")
    report["nvml_devices"] = len(reading["devices"])
    return [check("e. NVML reading recorded", bool(reading["devices"]),
                  f"{len(reading['devices'])} GPU(s) -> {recorded}")]


def _stem(device: str) -> str:
    return "gpu-check-" + file_name(device).removesuffix(".json")


def earlier_checks(out: Path, device: str, letters: str) -> list[dict]:
    """The results file's checks that this call does not run (with --only), each with when and
    by what command it was measured; none from a file that cannot be read."""
    try:
        earlier = json.loads((out / f"{_stem(device)}.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(earlier, dict) or not isinstance(earlier.get("checks"), list):
        return []
    kept = []
    for entry in earlier["checks"]:
        if isinstance(entry, dict) and str(entry.get("check", ""))[:1] not in letters:
            kept.append({"measured_at": earlier.get("measured_at"),
                         "command": earlier.get("command"), **entry})
    return kept


def write_report(report: dict, earlier: list[dict], out: Path) -> list[str]:
    """<out>/gpu-check-<device>.json and .md, each written whole to a new file and renamed
    over the old: a killed call leaves the last complete version."""
    checks = sorted(earlier + report["checks"], key=lambda c: str(c["check"])[:1])
    lines = [f"# gpu-check on {report['device']}", "",
             f"{report['measured_at']}, torch {report['torch']}, CUDA {report['cuda']}, "
             f"{report.get('seconds', 0):.0f} s, `{report['command']}`"
             + ("" if report["complete"] else " (not complete: the checks below are those that "
                "finished)"), ""]
    if not report["gpu_measured"]:
        lines += ["**No GPU was measured**: this machine has no CUDA device, so the steps ran on "
                  "the CPU at a small size. It shows that the script and the CPU path work, "
                  "nothing about a GPU.", ""]
    lines += ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['check']} | {c.get('status', 'pass' if c['ok'] else 'FAIL')} | {c['detail']}"
              + (f" (earlier: {c['measured_at']})" if "measured_at" in c else "") + " |"
              for c in checks]
    stem = _stem(report["device"])
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    recorded = {key: value for key, value in report.items() if key != "paths"}
    texts = [json.dumps({**recorded, "checks": checks}, indent=2) + "\n", "\n".join(lines) + "\n"]
    for path, text in zip(paths, texts):
        staged = path.with_name(path.name + ".new")
        staged.write_text(text)
        os.replace(staged, path)
    return [str(p) for p in paths]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
