"""`make peer-bench`: our plain replay against Avalanche's, on exactly the same protocol.

Our side is the real `mgrb run` of experiments/demo/digits_replay_keep.yaml (replay only, the
classifier kept across phases), one child process per seed. The peer side is Avalanche
(avalanche-lib), installed in its own environment (.venv-peer, requirements/peer.txt) and run
by this file's worker mode with that environment's Python, on what our code hands it:

- the data: our digits loader's tensors, less each class's balanced hold-out image (our
  stage 1 never trains on it, and replay has no stage 2), with data set class ids, the class
  order of mgrb.data.protocol.class_order and the phase sizes of the experiment file, turned
  into experiences by Avalanche's nc_benchmark;
- the network: our IncrementalNet (mgrb.training.models), seeded as our trainer seeds it, its
  classifier grown with old rows kept, inside an Avalanche DynamicModule;
- the memory: Avalanche's ParametricBuffer grouped by class, a fixed 6 exemplars per class,
  chosen by our rule (the first images of each class in data set order), checked image by
  image against our exemplars after every experience;
- the optimiser, epochs, batch and learning-rate schedule of the file (our set_stage1_rates,
  backbone and classifier each with its own rate as the original's two optimisers, applied by
  an Avalanche plugin before each iteration), our augmentation as the
  dataset transform, and Avalanche's stream accuracy on the test images of the classes seen.

Two peer rows: Avalanche's ReplayPlugin as shipped (each step draws a batch of new data and a
batch of memory), and the same buffer concatenated to the new data (as Avalanche's iCaRL
does), which is how our trainer mixes them. Every difference that remains is listed in the
result files (benchmarks/results/peer-replay-cpu.json and .md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "demo" / "digits_replay_keep.yaml"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results"
STEM = "peer-replay-cpu"
FORMAT = 1
OURS = "ours"
VARIANTS = {
    "replay": "Avalanche Naive + ReplayPlugin as shipped (each step: new images plus a memory batch)",
    "concat": "Avalanche Naive + the same buffer concatenated to the new data (our mixing)",
}
STREAM_ACCURACY = "Top1_Acc_Stream/eval_phase/test_stream"
RUN_TIMEOUT_S = 1800  # a digits run takes about a minute on two cores; this only catches a hang


class PeerBenchError(Exception):
    """A problem the user can fix; the message says what. Exit status 2."""


# -- what our code hands the peer ------------------------------------------------------------
def check_plain_replay(config) -> None:
    """The comparison means something only for plain replay with the classifier kept, which is
    what the peer runs; any other method setting would compare different algorithms."""
    problems = []
    if config.method.losses != "ce":
        problems.append(f"method.losses is {config.method.losses!r}, not 'ce'")
    if config.method.cbloss:
        problems.append("method.cbloss is true")
    if config.method.decouple:
        problems.append("method.decouple is true (a stage 2 the peer does not have)")
    if config.quirks.fresh_classifier:
        problems.append("quirks.fresh_classifier is true (the peer keeps old classifier rows)")
    if config.hierarchy.kind != "none":
        problems.append(f"hierarchy.kind is {config.hierarchy.kind!r}, not 'none'")
    if config.dataset.name != "digits":
        problems.append(f"dataset.name is {config.dataset.name!r}: this benchmark is sized for "
                        "the offline digits set")
    if problems:
        raise PeerBenchError(f"{config.name}: not plain replay, so there is nothing to compare "
                             "with the peer's: " + "; ".join(problems))


def protocol_settings(config) -> dict:
    """Everything the worker needs besides tensors, read from the validated experiment."""
    from mgrb.data.protocol import PhasePlan, memory_sizes

    proto, train = config.protocol, config.train
    protocol = PhasePlan(config.num_classes, proto.initial, proto.increment)
    per_class, holdout = memory_sizes(config.num_classes, proto.memory_total,
                                      proto.memory_per_class, proto.holdout_fraction)
    return {
        "num_classes": config.num_classes,
        "classes_per_phase": [protocol.seen(p) - protocol.old(p) for p in range(protocol.num_phases)],
        "exemplars_per_class": per_class - holdout, "holdout_per_class": holdout,
        "selection": proto.selection, "order_seed": proto.order_seed,
        "backbone": config.model.backbone, "stem": config.model.stem,
        "batch_size": train.batch_size, "eval_batch_size": train.eval_batch_size,
        "epochs": train.epochs, "lr": train.lr, "weight_decay": train.weight_decay,
        "milestones": list(train.milestones), "lr_decay": train.lr_decay,
        "warmup_epochs": train.warmup_epochs,
        "late_decay": config.quirks.late_decay,
        "warmup_backbone_only": config.quirks.warmup_backbone_only,
        "augment": {"crop_padding": train.augment.crop_padding, "flip": train.augment.flip,
                    "rotation": train.augment.rotation},
    }


def peer_inputs(config) -> dict:
    """The tensors and class order handed to the peer, taken from the stream our trainer
    opens: data set class ids (the peer's generator maps them through the order itself),
    the training images less the balanced hold-out, and which of them are our exemplars."""
    import torch

    from mgrb.data.protocol import EXEMPLAR, HOLDOUT
    from mgrb.training.progress import Progress
    from mgrb.training.stream import open_stream

    if config.protocol.selection != "first":
        raise PeerBenchError(f"{config.name}: protocol.selection is "
                             f"{config.protocol.selection!r}; the peer's buffer reproduces the "
                             "'first' rule only")
    stream = open_stream(config, torch.device("cpu"), Progress(quiet=True))
    data = stream.data
    if not data.in_memory:
        raise PeerBenchError(f"{config.name}: {data.name} is read from image files; the peer "
                             "is fed in-memory tensors only")
    kept = stream.roles != HOLDOUT
    return {
        "train_images": data.train_images[kept].clone(),
        "train_classes": data.train_labels[kept].clone(),
        "exemplar": (stream.roles[kept] == EXEMPLAR).clone(),
        "test_images": data.test_images.clone(), "test_classes": data.test_labels.clone(),
        "order": list(stream.order), "mean": list(data.mean), "std": list(data.std),
        "settings": {**protocol_settings(config), "channels": data.channels},
    }


def initial_weights_digest(settings: dict, seed: int) -> str:
    """SHA-256 of the network's starting weights, built as Trainer._build_model builds it on
    the CPU (the seed, then the backbone, then the network): the peer must start from the very
    same numbers."""
    import torch

    from mgrb.training.models import IncrementalNet, build_backbone

    torch.manual_seed(seed)
    return _digest(IncrementalNet(build_backbone(settings["backbone"], settings["channels"],
                                                 settings["stem"]),
                                  settings["classes_per_phase"][0]))


# -- the result files ---------------------------------------------------------------------------
def summarise_row(runs: dict) -> dict:
    """Mean and sample standard deviation of average and last top-1 over the seeds."""
    row = {}
    for key in ("avg_top1", "last_top1"):
        values = [run[key] for run in runs.values()]
        row[key] = {"mean": round(statistics.fmean(values), 2),
                    "std": round(statistics.stdev(values), 2) if len(values) > 1 else None}
    return row


def write_results(report: dict, out: Path) -> list[Path]:
    """<out>/peer-replay-cpu.json and .md, each written whole or not at all."""
    from mgrb.store.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{STEM}.json", out / f"{STEM}.md"]
    atomic_write(paths[0], (json.dumps(report, indent=2) + "\n").encode())
    atomic_write(paths[1], markdown(report).encode())
    return paths


def read_results(path: Path) -> dict:
    """A result file written by write_results, checked; PeerBenchError says what is wrong."""
    from mgrb.store.files import read_regular

    try:
        raw = read_regular(path, limit=4 << 20)
    except Exception as error:  # a link or a device is refused with its own message
        raise PeerBenchError(str(error)) from None
    if raw is None:
        raise PeerBenchError(f"{path}: no such file")
    try:
        report = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PeerBenchError(f"{path}: not JSON ({error})") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise PeerBenchError(f"{path}: not a peer-replay result of format {FORMAT}")
    missing = [key for key in ("rows", "differences", "protocol", "versions", "machine",
                               "command") if key not in report]
    if missing:
        raise PeerBenchError(f"{path}: lacks {', '.join(missing)}")
    for name, row in report["rows"].items():
        if not isinstance(row, dict) or not isinstance(row.get("seeds"), dict):
            raise PeerBenchError(f"{path}: row {name!r} has no per-seed results")
        for seed, run in row["seeds"].items():
            if not isinstance(run, dict) or not all(isinstance(run.get(key), (int, float))
                                                    for key in ("avg_top1", "last_top1")):
                raise PeerBenchError(f"{path}: row {name!r}, seed {seed}: no avg_top1/last_top1")
    return report


def table_lines(report: dict) -> list[str]:
    """Per seed, then mean ± std, of average incremental and last top-1 for every row."""
    rows = report["rows"]
    seeds = sorted({seed for row in rows.values() for seed in row["seeds"]}, key=int)
    width = max(len(name) for name in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"seed {seed:>6} avg/last" for seed in seeds)
             + "   avg top-1 (mean ± std)   last top-1 (mean ± std)"]
    for name, row in rows.items():
        cells = []
        for seed in seeds:
            run = row["seeds"].get(seed)
            cells.append(f"{run['avg_top1']:7.2f} /{run['last_top1']:6.2f}" if run
                         else f"{'-':>15}")
        lines.append(f"{name:{width}}  " + "  ".join(f"{cell:>20}" for cell in cells)
                     + f"   {_mean_std(row['avg_top1']):>22}   {_mean_std(row['last_top1']):>23}")
    return lines


def _mean_std(stat: dict) -> str:
    return f"{stat['mean']:.2f}" + ("" if stat["std"] is None else f" ± {stat['std']:.2f}")


def markdown(report: dict) -> str:
    rows, machine = report["rows"], report["machine"]
    seeds = sorted({seed for row in rows.values() for seed in row["seeds"]}, key=int)
    lines = ["# Replay: ours against Avalanche's on the same protocol", "",
             f"{report['measured_at']}, {machine['cpu']} ({machine['cores']} cores, torch "
             f"threads {machine['torch_threads']}), CPU only, `{report['command']}`, "
             f"{report['seconds']:.0f} s in all.", "",
             f"Experiment `{report['experiment']}`; top-1 (%) on the test images of the classes "
             "seen, average over the phases and after the last phase.", "",
             "| row | " + " | ".join(f"seed {s} avg / last" for s in seeds)
             + " | avg top-1 | last top-1 |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for name, row in rows.items():
        cells = [f"{row['seeds'][s]['avg_top1']:.2f} / {row['seeds'][s]['last_top1']:.2f}"
                 if s in row["seeds"] else "-" for s in seeds]
        lines.append(f"| {name}: {row['label']} | " + " | ".join(cells)
                     + f" | {_mean_std(row['avg_top1'])} | {_mean_std(row['last_top1'])} |")
    lines += ["", "Per phase (mean over seeds):", "",
              "| row | " + " | ".join(f"phase {p + 1}" for p in range(len(report["protocol"]
                                                                          ["classes_per_phase"])))
              + " |", "|---|" + "---|" * len(report["protocol"]["classes_per_phase"])]
    for name, row in rows.items():
        curves = [run["top1"] for run in row["seeds"].values()]
        means = [statistics.fmean(values) for values in zip(*curves)]
        lines.append(f"| {name} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    lines += ["", "Checked for every peer run (a run that fails one is refused):", ""]
    lines += [f"- {text}" for text in report["checks"]]
    lines += ["", "Differences that remain:", ""]
    lines += [f"- {text}" for text in report["differences"]]
    versions = report["versions"]
    lines += ["", f"Versions: ours {_versions(versions['ours'])}; peer {_versions(versions['peer'])}."]
    return "\n".join(lines) + "\n"


def _versions(versions: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in versions.items() if value is not None)


def differences(settings: dict, ours_images: list[int], variants: list[str]) -> list[str]:
    """Every protocol difference that remains, with the figures of this protocol: the phases'
    image counts are our trainer's (results.json), the rest the experiment file's."""
    batch, exemplars = settings["batch_size"], settings["exemplars_per_class"]
    augment = settings["augment"]
    memory = [exemplars * sum(settings["classes_per_phase"][:p]) for p in range(len(ours_images))]
    later = range(1, len(ours_images))
    steps = [-(-(ours_images[p] - memory[p]) // batch) for p in later]
    replayed = [min(memory[p], batch) * n for p, n in zip(later, steps)]
    peer_share = [r / (ours_images[p] - memory[p] + r) for p, r in zip(later, replayed)]
    our_share = [memory[p] / ours_images[p] for p in later]
    our_batches = sorted({-(-ours_images[p] // batch) for p in later})
    found = []
    if "replay" in variants:
        found.append(
            f"replay row only: Avalanche's ReplayPlugin makes each step from up to {batch} new "
            f"images plus a memory batch of {batch} (here {_span(memory[1:])} exemplars, so "
            f"the memory batch is min(memory, {batch}) of them), and ends an epoch when the new "
            f"data is used up ({_span(steps)} steps). So old classes make {_percent(peer_share)} "
            f"of an epoch's images instead of {_percent(our_share)} in ours, where new images "
            f"and exemplars are shuffled together into {_span(our_batches)} batches of {batch}. "
            "The concat row removes this difference.")
    found += [
        "random draws: the same seed gives the same starting weights (checked by digest), but "
        "batch order comes from the peer's DataLoader (torch's global generator) and "
        "augmentation is drawn per image from a generator of its own, so the batches and the "
        "crops and rotations differ from ours; so do the random new classifier rows of each "
        "phase (both Xavier-normal, bias zero, old rows kept).",
        f"augmentation: the same operation (mgrb.data.augment.augment_batch: shift by up to "
        f"{augment['crop_padding']} pixel(s), rotation by up to {augment['rotation']:g} degrees, "
        f"{'a' if augment['flip'] else 'no'} horizontal flip, one nearest-neighbour resampling "
        "with zero fill), applied per image as Avalanche's dataset transform instead of per "
        "batch.",
        f"learning rate: our set_stage1_rates (base {settings['lr']:g}, linear warm-up over "
        f"{settings['warmup_epochs']} epoch(s)"
        f"{' on the backbone only' if settings['warmup_backbone_only'] else ''}, "
        f"x{settings['lr_decay']:g} at 0-based milestone(s) "
        f"{', '.join(map(str, settings['milestones']))}"
        f"{', from the epoch after each' if settings['late_decay'] else ''}; backbone and "
        "classifier in two parameter groups) set before every iteration by "
        "a small Avalanche plugin, with "
        "the iteration count of the peer's own data loader; Avalanche's LRSchedulerPlugin "
        "cannot know each experience's iteration count when the scheduler is built.",
        f"buffer: Avalanche's ParametricBuffer grouped by class, with a selection strategy "
        f"written here (the first images of each class in data set order: our "
        f"'{settings['selection']}' rule) and BalancedExemplarsBuffer's fixed size per group "
        f"({exemplars} a class; ParametricBuffer's constructor does not expose that mode, so "
        "its two attributes are set after construction). Avalanche's ClassBalancedBuffer "
        "would choose by reservoir sampling instead.",
        f"hold-out: the first {settings['holdout_per_class']} training image(s) of each class "
        "(our balanced hold-out) are removed before Avalanche sees the data; ours never trains "
        "on them either (stage 1 excludes them and replay has no stage 2), so both train on the "
        "same images.",
        f"optimiser: none left. AdamW (lr {settings['lr']:g}, weight decay "
        f"{settings['weight_decay']:g}) with its state reset at each experience (Avalanche's "
        "update_optimizer, reset_optimizer_state=True), as our fresh AdamW each phase; "
        f"{settings['epochs']} epochs, batches of {batch}, plain cross-entropy on both sides.",
    ]
    return found


def _span(values) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low} to {high}"


def _percent(shares) -> str:
    low, high = round(100 * min(shares)), round(100 * max(shares))
    return f"{low}%" if low == high else f"{low}-{high}%"


# -- running both sides ----------------------------------------------------------------------
def child_env() -> dict:
    """This checkout's mgrb for the children, installed in the environment or not."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


def say(text: str) -> None:
    print(text, flush=True)


def ours_command(experiment: Path, seed: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "mgrb", "run", str(experiment), "--seed", str(seed),
            "--out", str(out), "--device", "cpu", "--quiet"]


def run_child(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{what}: no result after {RUN_TIMEOUT_S} s") from None
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RunFailed(f"{what} exited with status {done.returncode}:\n{tail}")


class RunFailed(Exception):
    """A training run (ours or the peer's) did not finish; exit status 1."""


def run_ours(config, experiment: Path, seed: int, work: Path) -> dict:
    from mgrb.pipeline.reproduce import planned_runs
    from mgrb.store.runfolder import RunFolder

    out = work / "ours"
    run_child(ours_command(experiment, seed, out), f"mgrb run, seed {seed}")
    # where `mgrb run --out` puts this seed's folder (a file that lists seeds: out/seed-S)
    folder = RunFolder(planned_runs(config, work, out, seed)[0].folder)
    results = folder.finished_results()
    if results is None:
        raise RunFailed(f"mgrb run, seed {seed}: finished without {folder.results_path}")
    return {"top1": [phase["top1"] for phase in results["phases"]],
            "avg_top1": results["avg_top1"], "last_top1": results["last_top1"],
            "wall_time_s": round(results["wall_time_s"], 1),
            "train_images": [phase["train_images"] for phase in results["phases"]]}


def check_same_start_and_data(peer: dict, ours: dict, digest: str, what: str) -> None:
    """A peer run counts only if it started from our weights and trained, phase by phase, on
    as many images (new data and memory) as ours did."""
    if peer.pop("initial_digest") != digest:
        raise RunFailed(f"{what}: the network did not start from our trainer's weights")
    if peer["train_images"] != ours["train_images"]:
        raise RunFailed(f"{what}: trained on {peer['train_images']} images per phase, ours on "
                        f"{ours['train_images']}")


def run_peer(python: Path, variant: str, seed: int, payload: Path, work: Path) -> dict:
    result = work / "peer" / f"{variant}-seed-{seed}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    command = [str(python), "-m", "benchmarks.peer_replay", "--worker", str(payload),
               "--variant", variant, "--seed", str(seed), "--worker-out", str(result)]
    run_child(command, f"Avalanche {variant}, seed {seed}")
    return json.loads(result.read_text())


def probe_peer(python: Path) -> dict:
    """The peer environment's versions, or a message that says how to make it."""
    if not python.exists():
        raise PeerBenchError(f"{python}: no peer environment. `make peer-bench` creates it "
                             "(.venv-peer, requirements/peer.txt under requirements/pins.txt)")
    code = ("import json, importlib.metadata as m; import avalanche, numpy, torch, torchvision; "
            "print(json.dumps({'avalanche-lib': m.version('avalanche-lib'), "
            "'torch': torch.__version__, 'torchvision': torchvision.__version__, "
            "'numpy': numpy.__version__}))")
    done = subprocess.run([str(python), "-W", "ignore", "-c", code], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeerBenchError(f"{python}: cannot import Avalanche ({last}); rebuild the "
                             "environment: rm -r .venv-peer && make peer-bench")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "os": platform.platform(), "python": platform.python_version()}


def benchmark(args) -> int:
    import torch

    from mgrb.config.experiment import load_config
    from mgrb.training.environment import git_commit, library_versions

    config = load_config(args.experiment)
    check_plain_replay(config)
    seeds = args.seeds or list(config.run_seeds)
    unknown = [seed for seed in seeds if seed not in config.run_seeds]
    if unknown:
        raise PeerBenchError(f"--seeds {unknown}: {config.name} lists seeds "
                             f"{list(config.run_seeds)}")
    peer_versions = probe_peer(args.peer_python)
    if peer_versions["torch"] != torch.__version__:
        raise PeerBenchError(f"the peer environment has torch {peer_versions['torch']}, ours "
                             f"{torch.__version__}: install it under requirements/pins.txt")
    variants = args.variants
    inputs = peer_inputs(config)
    started = time.monotonic()
    work = Path(args.keep or tempfile.mkdtemp(prefix="mgrb-peer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"peer-bench: {config.name}, seeds {seeds}, ours and Avalanche "
        f"{peer_versions['avalanche-lib']} ({', '.join(variants)}), on the CPU; runs in {work}")
    rows = {OURS: {"label": "mgrb run (our trainer)", "seeds": {}}}
    rows.update({f"avalanche-{v}": {"label": VARIANTS[v], "seeds": {}} for v in variants})
    try:
        payload = work / "peer-inputs.pt"
        torch.save(inputs, payload)
        for seed in seeds:
            digest = initial_weights_digest(inputs["settings"], seed)
            ours = run_ours(config, args.experiment, seed, work)
            rows[OURS]["seeds"][str(seed)] = ours
            say(f"  ours             seed {seed}: avg {ours['avg_top1']:.2f}, last "
                f"{ours['last_top1']:.2f} ({ours['wall_time_s']:.0f} s)")
            for variant in variants:
                peer = run_peer(args.peer_python, variant, seed, payload, work)
                check_same_start_and_data(peer, ours, digest, f"Avalanche {variant}, seed {seed}")
                rows[f"avalanche-{variant}"]["seeds"][str(seed)] = peer
                say(f"  avalanche-{variant:<6} seed {seed}: avg {peer['avg_top1']:.2f}, last "
                    f"{peer['last_top1']:.2f} ({peer['wall_time_s']:.0f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for row in rows.values():
        row.update(summarise_row(row["seeds"]))
    settings = inputs["settings"]
    report = {
        "format": FORMAT, "benchmark": "peer-replay",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
        "command": args.command_line,
        "ours_command": " ".join(["mgrb", "run", _relative(args.experiment), "--seed", "S",
                                  "--out", "DIR", "--device", "cpu", "--quiet"]),
        "experiment": _relative(args.experiment), "machine": machine(),
        "protocol": {**settings, "class_order": inputs["order"], "seeds": seeds,
                     "train_images_handed": int(inputs["train_classes"].numel()),
                     "test_images": int(inputs["test_classes"].numel())},
        "versions": {"ours": {**library_versions(), "git_commit": git_commit()},
                     "peer": {"python": platform.python_version(), **peer_versions}},
        "rows": rows,
        "differences": differences(settings, rows[OURS]["seeds"][str(seeds[0])]["train_images"],
                                   variants),
        "checks": PEER_CHECKS,
    }
    say("")
    for line in table_lines(report):
        say(line)
    paths = write_results(report, args.out)
    say("written: " + ", ".join(_relative(p) for p in paths))
    return 0


PEER_CHECKS = [
    "the network starts from the same weights as our trainer's for the seed (SHA-256 of the "
    "state dict)",
    "Avalanche's experiences hold the classes of our order, 5 then 1 per phase, relabelled "
    "0..9 in that order",
    "after every experience the buffer holds, per class seen, exactly our 6 exemplars (image by "
    "image), and nothing else",
    "each experience trains on as many images (new data and memory) as our trainer's phase",
]


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# -- the peer side (runs in .venv-peer) -----------------------------------------------------------
def worker(payload_path: Path, variant: str, seed: int, out: Path) -> None:
    """One Avalanche run; writes per-phase top-1 and the checks' outcome to `out` as JSON."""
    import random
    import warnings

    import numpy as np
    import torch

    # Noise from code this run does not use (qpsolvers) or chose deliberately (no loggers).
    warnings.filterwarnings("ignore", message="no QP solver")
    warnings.filterwarnings("ignore", message="No loggers specified")
    from avalanche.benchmarks import nc_benchmark
    from avalanche.benchmarks.utils.utils import concat_datasets
    from avalanche.core import SupervisedPlugin
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.models import DynamicModule
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.storage_policy import ExemplarsSelectionStrategy, ParametricBuffer
    from avalanche.training.supervised import Naive

    from mgrb.data.augment import Augment, augment_batch
    from mgrb.store.files import atomic_write
    from types import SimpleNamespace

    from mgrb.training.control import set_stage1_rates
    from mgrb.training.models import IncrementalNet, build_backbone

    inputs = torch.load(payload_path, weights_only=True)
    settings = inputs["settings"]
    started = time.monotonic()
    torch.manual_seed(seed)  # first, as our trainer does, so the network starts the same
    random.seed(seed)
    np.random.seed(seed)
    net = IncrementalNet(build_backbone(settings["backbone"], settings["channels"],
                                        settings["stem"]), settings["classes_per_phase"][0])
    digest = _digest(net)  # the parent compares it with our trainer's starting weights

    mean = torch.tensor(inputs["mean"]).view(-1, 1, 1)
    std = torch.tensor(inputs["std"]).view(-1, 1, 1)
    augment = Augment(**settings["augment"])
    draws = torch.Generator().manual_seed(seed)

    def train_transform(x):
        return (augment_batch(x[None], augment, draws)[0] - mean) / std

    def eval_transform(x):
        return (x - mean) / std

    def dataset(images, classes):
        data = torch.utils.data.TensorDataset(images.float() / 255, classes)
        data.targets = classes.tolist()
        return data

    counts = settings["classes_per_phase"]
    scenario = nc_benchmark(
        dataset(inputs["train_images"], inputs["train_classes"]),
        dataset(inputs["test_images"], inputs["test_classes"]),
        n_experiences=len(counts), task_labels=False, shuffle=False,
        fixed_class_order=inputs["order"], per_exp_classes=dict(enumerate(counts)),
        class_ids_from_zero_from_first_exp=True,
        train_transform=train_transform, eval_transform=eval_transform)
    seen = 0
    for phase, experience in enumerate(scenario.train_stream):
        expected = list(range(seen, seen + counts[phase]))
        seen += counts[phase]
        original = sorted(scenario.original_classes_in_exp[phase])
        if (sorted(experience.classes_in_this_experience) != expected
                or original != sorted(inputs["order"][expected[0]:seen])):
            raise SystemExit(f"experience {phase}: classes {experience.classes_in_this_experience}"
                             f" (data set ids {original}), not our phase's {expected}")

    class FirstImages(ExemplarsSelectionStrategy):
        """Our 'first' rule: a class's exemplars are its first images in data set order."""

        def make_sorted_indices(self, strategy, data):
            return list(range(len(data)))

    buffer = ParametricBuffer(max_size=settings["exemplars_per_class"] * settings["num_classes"],
                              groupby="class", selection_strategy=FirstImages())
    # BalancedExemplarsBuffer's fixed share per group (max_size // total_num_groups), which
    # ParametricBuffer's constructor does not expose: 6 per class from the first phase on.
    buffer.adaptive_size = False
    buffer.total_num_groups = settings["num_classes"]

    class GrowingNet(DynamicModule):
        """Our network as an Avalanche dynamic module: new rows for new classes, old rows kept."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

        def adaptation(self, experience):
            wanted = max(experience.classes_in_this_experience) + 1
            if wanted > self.inner.classifier.out_features:
                self.inner.renew_classifier(wanted, keep_old_weights=True)

    class Schedule(SupervisedPlugin):
        """Our set_stage1_rates before every iteration: the optimiser Avalanche makes anew for
        each experience (one group) split first into the backbone's and the classifier's
        groups, as our trainer has them."""

        train = SimpleNamespace(lr=settings["lr"], warmup_epochs=settings["warmup_epochs"],
                                milestones=settings["milestones"], lr_decay=settings["lr_decay"])
        quirks = SimpleNamespace(late_decay=settings["late_decay"],
                                 warmup_backbone_only=settings["warmup_backbone_only"])

        def before_training_iteration(self, strategy, **kwargs):
            optimizer = strategy.optimizer
            if len(optimizer.param_groups) == 1:
                (group,) = optimizer.param_groups
                classifier = {id(p) for p in strategy.model.inner.classifier.parameters()}
                optimizer.param_groups = [
                    {**group, "params": [p for p in group["params"] if id(p) not in classifier],
                     "name": "backbone"},
                    {**group, "params": [p for p in group["params"] if id(p) in classifier],
                     "name": "classifier"}]
            set_stage1_rates(optimizer, self.train, self.quirks,
                             epoch=strategy.clock.train_exp_epochs,
                             iteration=strategy.clock.train_epoch_iterations,
                             iterations=len(strategy.dataloader))

    class CountImages(SupervisedPlugin):
        """How many images each experience trains on (new data and memory), for the parent
        to compare with our trainer's count of the same phase."""

        def __init__(self):
            super().__init__()
            self.counts = []

        def before_training_exp(self, strategy, **kwargs):
            memory = len(buffer.buffer) if variant == "replay" else 0  # concat: already inside
            self.counts.append(len(strategy.adapted_dataset) + memory)

    class ConcatReplay(SupervisedPlugin):
        """The buffer appended to the experience's data, as Avalanche's iCaRL appends its
        memory: one shuffled set, batches of the strategy's size."""

        def __init__(self, storage_policy):
            super().__init__()
            self.storage_policy = storage_policy

        def after_train_dataset_adaptation(self, strategy, **kwargs):
            if len(self.storage_policy.buffer):
                strategy.adapted_dataset = concat_datasets(
                    [strategy.adapted_dataset, self.storage_policy.buffer]).train()

        def after_training_exp(self, strategy, **kwargs):
            self.storage_policy.post_adapt(strategy, strategy.experience)

    replay = (ReplayPlugin(mem_size=buffer.max_size, storage_policy=buffer)
              if variant == "replay" else ConcatReplay(buffer))
    model, counter = GrowingNet(net), CountImages()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=settings["lr"],
                                    weight_decay=settings["weight_decay"]),
        criterion=torch.nn.CrossEntropyLoss(), train_mb_size=settings["batch_size"],
        train_epochs=settings["epochs"], eval_mb_size=settings["eval_batch_size"],
        device="cpu", plugins=[replay, Schedule(), counter],
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]))

    exemplars = _exemplar_images(inputs, eval_transform)
    top1, steps = [], []
    for phase, experience in enumerate(scenario.train_stream):
        strategy.train(experience, reset_optimizer_state=True)
        steps.append(strategy.clock.train_exp_iterations)
        _check_buffer(buffer, exemplars, seen=sum(counts[:phase + 1]))
        metrics = strategy.eval(scenario.test_stream[:phase + 1])
        accuracy = [value for key, value in metrics.items() if key.startswith(STREAM_ACCURACY)]
        if len(accuracy) != 1:
            raise SystemExit(f"no single {STREAM_ACCURACY} metric after experience {phase}")
        top1.append(round(100 * float(accuracy[0]), 4))
        print(f"avalanche-{variant} seed {seed}: experience {phase + 1}: top-1 {top1[-1]:.2f}",
              flush=True)
    record = {"top1": top1, "avg_top1": round(sum(top1) / len(top1), 4), "last_top1": top1[-1],
              "wall_time_s": round(time.monotonic() - started, 1), "steps_per_phase": steps,
              "train_images": counter.counts,
              "torch_threads": torch.get_num_threads(), "initial_digest": digest}
    atomic_write(out, (json.dumps(record, indent=2) + "\n").encode())


def _digest(net) -> str:
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _exemplar_images(inputs: dict, eval_transform) -> dict:
    """Our exemplars per incremental label, as the peer's eval transform shows them."""
    import torch

    label_of = {cls: label for label, cls in enumerate(inputs["order"])}
    chosen = inputs["exemplar"]
    images = inputs["train_images"][chosen].float() / 255
    labels = [label_of[int(c)] for c in inputs["train_classes"][chosen]]
    grouped: dict[int, list] = {}
    for image, label in zip(images, labels):
        grouped.setdefault(label, []).append(eval_transform(image))
    return {label: torch.stack(group) for label, group in grouped.items()}


def _check_buffer(buffer, exemplars: dict, seen: int) -> None:
    import torch

    if sorted(buffer.buffer_groups) != list(range(seen)):
        raise SystemExit(f"buffer groups {sorted(buffer.buffer_groups)}, not classes 0..{seen - 1}")
    for label, group in buffer.buffer_groups.items():
        held = group.buffer.eval()
        images = torch.stack([held[i][0] for i in range(len(held))])
        targets = {int(held[i][1]) for i in range(len(held))}
        if targets != {label} or not torch.equal(images, exemplars[label]):
            raise SystemExit(f"the buffer's class {label} is not our exemplars of that class")


# -- command line -----------------------------------------------------------------------------------
def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peer_replay", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, default=EXPERIMENT,
                        help="a plain-replay experiment file (default: %(default)s)")
    parser.add_argument("--seeds", type=_seeds, help="comma-separated; default: the file's")
    parser.add_argument("--variants", type=_variants, default=list(VARIANTS),
                        help="peer rows, comma-separated from: " + ", ".join(VARIANTS))
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON,
                        help="Python of the environment with Avalanche (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"where {STEM}.json and .md go (default: %(default)s)")
    parser.add_argument("--keep", type=Path, help="keep the runs in this new or empty folder")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        if args.variant is None or args.seed is None or args.worker_out is None:
            parser.error("--worker needs --variant, --seed and --worker-out")
        return args
    if args.keep is not None and args.keep.exists() and (
            not args.keep.is_dir() or any(args.keep.iterdir())):
        # finished runs there would be taken for this benchmark's: a stale result passing as new
        parser.error(f"--keep {args.keep}: not a new or empty folder")
    if not args.experiment.is_file():
        parser.error(f"--experiment {args.experiment}: no such file")
    return args


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers, comma-separated") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seed given")
    return seeds


def _variants(text: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in VARIANTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(VARIANTS)}")
    return chosen


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker is not None:
        worker(args.worker, args.variant, args.seed, args.worker_out)
        return 0
    args.command_line = " ".join(["python -m benchmarks.peer_replay",
                                  *(sys.argv[1:] if argv is None else argv)]).strip()
    from mgrb.errors import MGRBError

    # SIGTERM as Ctrl-C: the runs stop and the work folder goes
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return benchmark(args)
    except (PeerBenchError, MGRBError) as error:
        print(f"peer-bench: error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"peer-bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("peer-bench: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
