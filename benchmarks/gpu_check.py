"""`make gpu-check`: the one command that proves the GPU path, on the machine it runs on.

Every step goes through the real entry points (`mgrb run` processes, `make bench`'s script),
on a CIFAR-100-shaped data set written in torchvision's pickle layout (synthetic_cifar.py):
  a. 3 phases, both stages, for fp32 and bf16, torch.compile off and on: every run finishes,
     learns, records the numerics it was asked for, and compiles without falling back;
  b. deterministic mode twice: identical accuracies, to the last digit of every class;
  c. deterministic mode killed with SIGKILL mid-run (mid-epoch checkpoints every few batches),
     then resumed: identical to (b);
  d. the bench table: fast path against the original-style pipeline, model FLOP/s and the
     share of the bf16 peak, 1/2/4 runs packed;
  e. an NVML reading of this machine, in the shapes the launcher's tests replay;
  f. no host sync inside a mid-epoch fast-path step (from the bench, CUDA's sync debug mode);
  g. the fp32 run of (a) under `mgrb run --nproc 2` (two GPUs with NCCL; skipped with fewer;
     gloo on the CPU): two processes, top-1 near the one-process run's in every phase.
On a GPU the sizes are a few thousand images and ResNet-34 (under 10 minutes on one H100 is
the target). Without CUDA the same steps run on the CPU at a small size, which proves the
script and the CPU path only: the summary says plainly that no GPU was measured.

Writes <out>/gpu-check-<device>.json and .md (default benchmarks/results/) and, on a GPU,
<nvml-out>/nvml_recorded.json (default tests/data/). Exit 0 when every check passes.
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
from pathlib import Path

from benchmarks.synthetic_cifar import write_cifar100
from mgrb.perf.throughput import file_name

ROOT = Path(__file__).resolve().parents[1]

CHANCE_PHASE_1 = 100 / 60  # top-1 % of a guess among the first phase's 60 classes
PROFILES = {
    "cuda": {"train_per_class": 40, "test_per_class": 10, "backbone": "resnet34", "epochs": 3,
             "milestones": [2], "stage2_epochs": 2, "batch_size": 128, "memory_total": 2000,
             "learned": 3.0, "parallel": True, "timeout": 540,
             "bench": ["--pack-seconds", "15"]},
    "cpu": {"train_per_class": 12, "test_per_class": 3, "backbone": "resnet_small", "epochs": 2,
            "milestones": [1], "stage2_epochs": 1, "batch_size": 32, "memory_total": 1000,
            "learned": 2.0, "parallel": False, "timeout": 600,
            "bench": ["--batch", "2", "--steps", "1", "--pack", "yes", "--pack-runs", "1,2",
                      "--pack-seconds", "0.5"]},
}
MATRIX = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]


def child_env() -> dict:
    """This checkout's mgrb for the child processes, installed or not."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def say(text: str) -> None:
    print(text, flush=True)


def experiment(name: str, data: Path, profile: dict, **train) -> dict:
    return {
        "name": name, "description": "make gpu-check: synthetic CIFAR-100 shapes",
        "dataset": {"name": "cifar100", "root": str(data), "download": False},
        "protocol": {"initial": 60, "increment": 20, "memory_total": profile["memory_total"]},
        "model": {"backbone": profile["backbone"]},
        "train": {"epochs": profile["epochs"], "milestones": profile["milestones"],
                  "stage2_epochs": profile["stage2_epochs"], "stage2_milestones": [1],
                  "batch_size": profile["batch_size"], "log_every": 5, "checkpoint_every": 1,
                  **train},
        "hierarchy": {"kind": "ont"},
    }


class Runs:
    """`mgrb run` processes of this check, one folder each under `work`."""

    def __init__(self, work: Path, device: str, timeout: float):
        self.work, self.device, self.timeout = work, device, timeout

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
        """The run's outcome: its exit status, its results, the end of its output."""
        try:
            code = process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        process.log.close()
        results = self.folder(label) / "results.json"
        tail = (self.work / f"{label}.log").read_text(errors="replace").strip().splitlines()[-3:]
        return {"label": label, "code": code,
                "results": json.loads(results.read_text()) if results.exists() else None,
                "output_tail": tail}

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


def check(name: str, ok: bool, detail: str, **data) -> dict:
    say(f"  [{'pass' if ok else 'FAIL'}] {name}: {detail}")
    return {"check": name, "ok": bool(ok), "detail": detail, **data}


# -- a. the numerics matrix --------------------------------------------------------------------
def numerics_matrix(runs: Runs, data: Path, profile: dict, on_gpu: bool) -> list[dict]:
    jobs = [(f"{precision}-compile-{'on' if compiled else 'off'}",
             experiment(f"gpu_check_{precision}_{int(compiled)}", data, profile,
                        precision=precision, compile=compiled))
            for precision, compiled in MATRIX]
    outcomes = runs.run_all(jobs, profile["parallel"])
    return [judge_run(f"a. {label}", outcomes[label], precision=precision, compiled=compiled,
                      on_gpu=on_gpu, learned=profile["learned"])
            for (label, _), (precision, compiled) in zip(jobs, MATRIX)]


def judge_run(name: str, outcome: dict, *, precision: str, compiled: bool, on_gpu: bool,
              learned: float) -> dict:
    """One matrix run: it finished, with the numerics asked for, compiled without falling
    back, on the GPU when there is one, and learned (phase 1 well above chance)."""
    results = outcome["results"]
    if outcome["code"] != 0 or results is None:
        return check(name, False, f"exit {outcome['code']}: {' / '.join(outcome['output_tail'])}")
    problems = []
    top1 = [phase["top1"] for phase in results["phases"]]
    if len(top1) != 3:
        problems.append(f"{len(top1)} phases, not 3")
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
    return check(name, not problems, "; ".join(problems) or detail, top1=top1,
                 wall_time_s=results["wall_time_s"], compile=report,
                 numerics=results["numerics"], device=results["device"])


# -- g. one run over two processes ---------------------------------------------------------
NPROC_TOLERANCE = 3.0  # points of top-1 per phase: float sums in another order, nothing more


def two_processes(runs: Runs, data: Path, profile: dict, matrix: list[dict], on_gpu: bool,
                  gpus: int) -> list[dict]:
    """The matrix's fp32 run again under `mgrb run --nproc 2` (NCCL on two GPUs, gloo on the
    CPU): it finishes as two processes and lands near the one-process run in every phase."""
    if on_gpu and gpus < 2:
        say(f"  [skip] g. --nproc 2: {gpus} GPU here; it needs two")
        return []
    config = experiment("gpu_check_fp32_0", data, profile, precision="fp32", compile=False)
    outcome = runs.finish(runs.start(config, "nproc-2", ("--nproc", "2")), "nproc-2")
    judged = judge_run("g. fp32, --nproc 2", outcome, precision="fp32", compiled=False,
                       on_gpu=on_gpu, learned=profile["learned"])
    reference = next(c for c in matrix if c["check"] == "a. fp32-compile-off")
    if not (judged["ok"] and reference["ok"]):
        return [judged]
    processes = outcome["results"]["numerics"].get("processes")
    gaps = [abs(a - b) for a, b in zip(judged["top1"], reference["top1"])]
    ok = processes == 2 and max(gaps) <= NPROC_TOLERANCE
    return [check("g. fp32, --nproc 2", ok,
                  f"{processes} processes; top-1 by phase "
                  f"{', '.join(f'{t:.2f}' for t in judged['top1'])} against one process's "
                  f"{', '.join(f'{t:.2f}' for t in reference['top1'])}; "
                  f"{judged['wall_time_s']:.0f} s against {reference['wall_time_s']:.0f} s",
                  top1=judged["top1"], wall_time_s=judged["wall_time_s"], processes=processes)]


# -- b and c. determinism, and a resume after SIGKILL ----------------------------------------
def determinism(runs: Runs, data: Path, profile: dict) -> list[dict]:
    config = experiment("gpu_check_deterministic", data, profile, deterministic=True)
    killed_config = {**config, "train": {**config["train"], "checkpoint_minutes": 0.002}}
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
    deadline = time.monotonic() + runs.timeout
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
def bench(work: Path, device: str, profile: dict) -> tuple[list[dict], dict | None]:
    runs_dir = work / "bench"
    command = [sys.executable, "-m", "benchmarks.bench_step", "--device", device,
               "--runs-dir", str(runs_dir), *profile["bench"]]
    code = subprocess.run(command, timeout=profile["timeout"], env=child_env(),
                          cwd=ROOT).returncode
    found = sorted((runs_dir / ".bench").glob("*.json"))
    table = json.loads(found[0].read_text()) if found else None
    if code != 0 or table is None:
        return [check("d. bench", False, f"bench_step.py exited {code}")], table
    packed = table.get("packed_images_per_s") or {}
    detail = (f"fast {table['fast_images_per_s']:.1f} images/s, reference "
              f"{table['reference_images_per_s']:.1f}, ratio {table['ratio']:.1f}x, "
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
def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="where gpu-check-<device>.json and .md go")
    parser.add_argument("--nvml-out", type=Path, default=ROOT / "tests" / "data",
                        help="where a GPU's NVML reading goes (nvml_recorded.json)")
    parser.add_argument("--keep", type=Path, help="keep the runs and logs in this folder")
    return parser.parse_args(argv)


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
    profile = PROFILES[device]
    name = torch.cuda.get_device_name(0) if on_gpu else f"CPU {platform.machine()}"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"gpu-check: error: {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    say(f"gpu-check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})"
        + ("" if on_gpu else ": NO GPU HERE. The same steps run on the CPU at a small size; "
                             "they prove the script and the CPU path, and measure no GPU."))
    started = time.monotonic()
    work = Path(args.keep or tempfile.mkdtemp(prefix="mgrb-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run_checks(work, device, profile, name, torch, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    paths = write_report(report, args.out)
    failed = [c["check"] for c in report["checks"] if not c["ok"]]
    say(f"{len(report['checks']) - len(failed)} of {len(report['checks'])} checks passed in "
        f"{report['seconds']:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else "")
        + ("" if on_gpu else ". No GPU was measured."))
    say("written: " + ", ".join(str(p) for p in paths))
    return 1 if failed else 0


def run_checks(work: Path, device: str, profile: dict, name: str, torch, args) -> dict:
    data = work / "data"
    write_cifar100(data, train_per_class=profile["train_per_class"],
                   test_per_class=profile["test_per_class"])
    runs = Runs(work, device, profile["timeout"])
    (work / "runs").mkdir(exist_ok=True)
    on_gpu = device == "cuda"
    say("a. fp32 and bf16, compile off and on, 3 phases, both stages:")
    checks = numerics_matrix(runs, data, profile, on_gpu)
    say("g. the fp32 run over two processes (DistributedDataParallel):")
    checks += two_processes(runs, data, profile, checks, on_gpu,
                            torch.cuda.device_count() if on_gpu else 0)
    say("b, c. deterministic mode twice; killed with SIGKILL and resumed:")
    checks += determinism(runs, data, profile)
    say("d, f. the bench table (benchmarks/bench_step.py):")
    bench_checks, table = bench(work, device, profile)
    checks += bench_checks
    reading = nvml_reading() if on_gpu else None
    if reading is not None:
        args.nvml_out.mkdir(parents=True, exist_ok=True)
        recorded = args.nvml_out / "nvml_recorded.json"
        recorded.write_text(json.dumps(reading, indent=2) + "\n")
        checks.append(check("e. NVML reading recorded", bool(reading["devices"]),
                            f"{len(reading['devices'])} GPU(s) -> {recorded}"))
    else:
        say("  [skip] e. NVML reading: " + ("NVML could not be read" if on_gpu else "no GPU"))
    return {"device": name, "device_type": device, "gpu_measured": on_gpu,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "host": platform.node(), "python": platform.python_version(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "profile": {k: v for k, v in profile.items() if k != "bench"},
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "checks": checks, "bench": table, "nvml_devices": len(reading["devices"]) if reading else 0,
            "c_compiler": shutil.which("cc") or shutil.which("gcc")}


def write_report(report: dict, out: Path) -> list[Path]:
    stem = "gpu-check-" + file_name(report["device"]).removesuffix(".json")
    lines = [f"# gpu-check on {report['device']}", "",
             f"{report['measured_at']}, torch {report['torch']}, CUDA {report['cuda']}, "
             f"{report['seconds']:.0f} s, `{report['command']}`", ""]
    if not report["gpu_measured"]:
        lines += ["**No GPU was measured**: this machine has no CUDA device, so the steps ran on "
                  "the CPU at a small size. It shows that the script and the CPU path work, "
                  "nothing about a GPU.", ""]
    lines += ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['check']} | {'pass' if c['ok'] else 'FAIL'} | {c['detail']} |"
              for c in report["checks"]]
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text("\n".join(lines) + "\n")
    return paths


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
