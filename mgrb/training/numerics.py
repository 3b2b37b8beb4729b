"""How a run computes: precision, TF32, deterministic kernels and torch.compile.

Resolved once per run from `train.*` and the device, applied to torch's process-wide settings
for the length of the run (and put back afterwards, so a library caller keeps its own), and
recorded in results.json under `numerics`: a result depends on every one of them.

What each setting means, on every device:
- `precision: auto` (the default): the original's numerics. It ran fp32 on torch 1.10 with
  CUDA 11.1, where TF32 was on for cuDNN convolutions and for matmuls; so on a GPU, `tf32`,
  except with `deterministic: true`, which keeps TF32 off (fp32) and records that it did; on
  the CPU, fp32.
- `precision: tf32`: fp32 tensors, TF32 allowed for matmuls and cuDNN convolutions (a GPU
  from Ampere on; elsewhere, and on the CPU, this is fp32).
- `precision: fp32`: no autocast; TF32 off for matmuls and cuDNN convolutions, so fp32 is fp32.
- `precision: bf16`, the fast mode (not the original's numerics): bf16 autocast over the
  backbone only. The classifier runs in fp32 outside autocast, so every logit (training,
  teacher, evaluation) is fp32: bf16 logits tie and flip top-1 argmaxes. The losses are fp32.
  TF32 stays off for the fp32 parts: they are small.
- `deterministic: true`: strict. An operation without a deterministic kernel raises, and the
  run stops with a message naming it, rather than warn and give results that differ.
- `compile`: the backbone (student and teacher) compiled once for the whole run with a
  dynamic batch dimension; the classifier, which grows every phase, stays eager. `auto` (the
  default) compiles on a GPU where a C compiler is on PATH (Triton builds its launchers with
  it) and not on the CPU, where compiling costs more than it saves on the small runs made
  there; `true` insists, and stops a run that has no compiler. Inductor and Triton keep what
  they compile in $TORCHINDUCTOR_CACHE_DIR and $TRITON_CACHE_DIR, which a compiling run points
  into the runs folder (`share_compile_cache`), so a later run of the same shapes, in another
  process, does not compile again.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from mgrb.config.schema import Train
from mgrb.errors import MGRBError

# cuBLAS reads this when it creates its first handle; a fixed workspace makes it deterministic.
CUBLAS_WORKSPACE = ":4096:8"
DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")
_NO_DETERMINISTIC_KERNEL = re.compile(r"(\S+) does not have a deterministic implementation")


def prepare_process(deterministic: bool) -> None:
    """Call at process entry, before anything starts CUDA: cuBLAS ignores a workspace setting
    made after its first handle exists, for the rest of the process."""
    if deterministic and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in DETERMINISTIC_WORKSPACES:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE


@dataclass(frozen=True)
class Numerics:
    device_type: str
    bf16: bool
    channels_last: bool
    compile: bool
    deterministic: bool
    compile_choice: str = "set: false"  # how `compile` was decided, for results.json
    tf32: bool = False
    precision_choice: str = "set: fp32"  # how the precision was decided, for results.json

    @classmethod
    def resolve(cls, device: torch.device, *, precision: str = "auto",
                channels_last: bool | str = "auto", compile: bool | str = False,
                deterministic: bool = False) -> Numerics:
        """The run's numerics from the `train` settings of the same names ("auto": the
        original's numerics, channels-last and compiling on a GPU; fp32, the default layout
        and no compiling on the CPU)."""
        on_gpu = device.type == "cuda"
        compiled, choice = _compile_choice(compile, device.type)
        tf32, precision_choice = _tf32_choice(precision, on_gpu, deterministic)
        return cls(device_type=device.type, bf16=precision == "bf16",
                   channels_last=channels_last is True or (channels_last == "auto" and on_gpu),
                   compile=compiled, deterministic=deterministic, compile_choice=choice,
                   tf32=tf32, precision_choice=precision_choice)

    @classmethod
    def of(cls, train: Train, device: torch.device) -> Numerics:
        return cls.resolve(device, precision=train.precision, channels_last=train.channels_last,
                           compile=train.compile, deterministic=train.deterministic)

    @property
    def memory_format(self) -> torch.memory_format:
        """Of the networks' 4-D weights and the batches they take."""
        return torch.channels_last if self.channels_last else torch.preserve_format

    @property
    def fused_optimizer(self) -> bool:
        """AdamW's fused kernel on CUDA: one launch for all parameters instead of hundreds."""
        return self.device_type == "cuda"

    def autocast(self):
        """For the backbone only; see `logits`."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16)

    def logits(self, backbone, classifier, x: torch.Tensor) -> torch.Tensor:
        """classifier(backbone(x)): the backbone under the run's autocast, the classifier in
        fp32 outside it, so the logits are fp32 whatever the precision."""
        with self.autocast():
            features = backbone(x)
        return classifier(features.float())

    def describe(self) -> dict:
        return {"precision": "bf16" if self.bf16 else "tf32" if self.tf32 else "fp32",
                "precision_choice": self.precision_choice,
                "autocast": "bfloat16, backbone only" if self.bf16 else "off",
                "logits_and_losses": "float32", "tf32": self.tf32,
                "channels_last": self.channels_last, "compile": self.compile,
                "compile_choice": self.compile_choice,
                "deterministic": self.deterministic,
                "cudnn_benchmark": self.device_type == "cuda" and not self.deterministic,
                "optimizer": "AdamW (fused)" if self.fused_optimizer else "AdamW"}


@contextmanager
def applied(numerics: Numerics):
    """torch's process-wide settings for one run, put back afterwards; an operation refused
    by deterministic mode leaves as an MGRBError naming it."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    # The legacy allow_tf32 flags, not the newer fp32_precision ones: Inductor reads the
    # legacy flags, and torch raises when it finds the two APIs mixed.
    torch.backends.cudnn.allow_tf32 = numerics.tf32
    torch.backends.cuda.matmul.allow_tf32 = numerics.tf32
    if numerics.deterministic:
        if numerics.device_type == "cuda":
            _check_cublas_workspace()
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        # every batch but an epoch's last has one shape: let cuDNN time its algorithms once
        torch.backends.cudnn.benchmark = numerics.device_type == "cuda"
    try:
        yield
    except RuntimeError as error:
        refused = deterministic_refusal(error, numerics.device_type)
        if refused is None:
            raise
        raise refused from None
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.backends.cudnn.allow_tf32 = saved[3]
        torch.backends.cuda.matmul.allow_tf32 = saved[4]


def _tf32_choice(precision: str, on_gpu: bool, deterministic: bool) -> tuple[bool, str]:
    """Whether TF32 is allowed, and how that was decided (results.json's precision_choice)."""
    if precision == "tf32":
        return on_gpu, "set: tf32" if on_gpu else "set: tf32, which is fp32 on the CPU"
    if precision != "auto":
        return False, f"set: {precision}"
    if not on_gpu:
        return False, "auto: fp32 on the CPU"
    if deterministic:
        return False, ("auto: fp32 with TF32 off, as train.deterministic asks (the original "
                       "had TF32 on)")
    return True, "auto: the original's numerics, fp32 with TF32 convolutions and matmuls"


def _check_cublas_workspace() -> None:
    value = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if value in DETERMINISTIC_WORKSPACES:
        return
    if not torch.cuda.is_initialized():  # a caller that skipped prepare_process: still in time
        prepare_process(deterministic=True)
        return
    raise MGRBError(f"train.deterministic: cuBLAS needs CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} "
                    f"set before CUDA starts, and this process started CUDA with "
                    f"{value or 'none set'}. `mgrb run` sets it at start; a script that calls "
                    "the trainer must set it before its first CUDA call.")


def deterministic_refusal(error: BaseException, device_type: str) -> MGRBError | None:
    """The user-facing error for torch refusing a non-deterministic operation, or None."""
    text = str(error)
    found = _NO_DETERMINISTIC_KERNEL.search(text)
    if found:
        return MGRBError(
            f"train.deterministic is true, but {found.group(1)} has no deterministic "
            f"implementation on this device ({device_type}), so PyTorch refused it rather than "
            "give results that change from run to run. Set train.deterministic: false for "
            "this experiment (a resumed run may then differ in the last digits).")
    if "CUBLAS_WORKSPACE_CONFIG" in text:
        return MGRBError(f"train.deterministic: cuBLAS needs CUBLAS_WORKSPACE_CONFIG="
                         f"{CUBLAS_WORKSPACE} set before CUDA starts (`mgrb run` does this); "
                         f"PyTorch says: {text.splitlines()[0][:200]}")
    return None


class Compiler:
    """torch.compile for the backbones of one run, and torch's own account of it.

    Batch size is the one shape that changes within a run (an epoch's partial last batch,
    evaluation batches, each phase's set sizes), so it is marked dynamic on every call: the
    graphs compiled in the first phase serve every later one. Dynamo's cache belongs to the
    code of `ResNet.forward`, so a new teacher each phase reuses the teacher's graph.
    """

    def __init__(self, enabled: bool, device_type: str):
        self.enabled = enabled
        if enabled:
            _check_compiler(device_type)
        self._start = _dynamo_counts() if enabled else None
        self._fallbacks_told = 0

    def wrap(self, backbone):
        if not self.enabled:
            return backbone
        compiled = torch.compile(backbone)

        def run(x: torch.Tensor) -> torch.Tensor:
            torch._dynamo.maybe_mark_dynamic(x, 0)
            return compiled(x)

        return run

    def report(self) -> dict:
        """Graphs compiled, frames that fell back to eager (a failed compile or the recompile
        limit), graph breaks: counted by torch since this run began."""
        if not self.enabled:
            return {"enabled": False}
        now = _dynamo_counts()
        grew = {key: now[key] - self._start[key] for key in now}
        # graphs Inductor took from its cache rather than compiled (an earlier run's)
        return {"enabled": True, "cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                "cache_hits": grew["cache_hits"], "cache_misses": grew["cache_misses"],
                "graphs": grew["graphs"],
                "fallbacks_to_eager": grew["frames"] - grew["ok"], "graph_breaks": grew["breaks"],
                "recompile_limit": torch._dynamo.config.recompile_limit}

    def after_phase(self, phase: int, append_event, warn) -> None:
        """The counters after each phase as an event; a new fallback to eager said at once."""
        report = self.report()
        if not report["enabled"]:
            return
        append_event({"event": "compile", "phase": phase, **report})
        if report["fallbacks_to_eager"] > self._fallbacks_told:
            self._fallbacks_told = report["fallbacks_to_eager"]
            warn(f"warning: torch.compile fell back to eager {report['fallbacks_to_eager']} "
                 f"time(s) by phase {phase + 1} ({report['graphs']} graphs compiled): part of "
                 "this run ran uncompiled. results.json records it under `compile`.")


def _dynamo_counts() -> dict:
    from torch._dynamo.utils import counters

    return {"graphs": counters["stats"]["unique_graphs"], "frames": counters["frames"]["total"],
            "ok": counters["frames"]["ok"], "breaks": sum(counters["graph_break"].values()),
            "cache_hits": counters["inductor"]["fxgraph_cache_hit"],
            "cache_misses": counters["inductor"]["fxgraph_cache_miss"]}


def _compile_choice(setting: bool | str, device_type: str) -> tuple[bool, str]:
    """(compile or not, how that was decided) for train.compile on this device."""
    if setting != "auto":
        return bool(setting), f"set: {str(bool(setting)).lower()}"
    if device_type != "cuda":
        return False, "auto: off on the CPU"
    found = _compiler(device_type)
    if found is None:
        return False, "auto: off, no C compiler on PATH for Triton"
    return True, f"auto: on (CUDA, C compiler {found})"


def _compiler(device_type: str) -> str | None:
    """The compiler Inductor (C++ on the CPU) or Triton (a C launcher on a GPU) would use."""
    names = ("c++", "g++", "clang++") if device_type == "cpu" else ("cc", "gcc", "clang")
    wanted = os.environ.get("CXX" if device_type == "cpu" else "CC")
    if wanted and shutil.which(wanted):
        return wanted
    return next((name for name in names if shutil.which(name)), None)


CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
# Read when this module is imported, before torch's compiler is (importing it, as any
# optimizer step does, sets TORCHINDUCTOR_CACHE_DIR to its /tmp default): the user's own.
_SET_BY_USER = frozenset(name for name in CACHE_VARIABLES if name in os.environ)


def share_compile_cache(run_folder: Path) -> dict[str, str]:
    """Point a compiling run's caches into its runs folder ($MGRB_RUNS, else ./runs; for a run
    folder outside it, that folder's parent), unless the user set them; returns what was set.
    Only compiling runs: torch's compiler makes the folder when it is imported, and a runs
    folder of other runs should not gain one."""
    runs_dir = Path(os.environ.get("MGRB_RUNS") or "runs").resolve()
    folder = Path(run_folder).resolve()
    place = runs_dir if folder.is_relative_to(runs_dir) else folder.parent
    chosen = {name: value for name, value in compile_cache(place).items()
              if name not in _SET_BY_USER}
    os.environ.update(chosen)
    return chosen


def compile_cache(runs_dir: Path) -> dict[str, str]:
    """Where Inductor and Triton keep compiled code for runs under `runs_dir`: the environment
    to set before torch's compiler is imported (which makes the folder). None where this
    process may not write there (a container's user, given only its own run folder): torch's
    default, a folder in /tmp, then serves."""
    folder = Path(runs_dir) / ".cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return {}
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        return {}
    return {"TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
            "TRITON_CACHE_DIR": str(folder / "triton")}


def _check_compiler(device_type: str) -> None:
    """Inductor writes C++ on the CPU, and Triton builds a C launcher on a GPU: either needs a
    compiler on PATH at run time, which a slim image may lack."""
    if _compiler(device_type) is not None:
        return
    names = ("c++", "g++", "clang++") if device_type == "cpu" else ("cc", "gcc", "clang")
    raise MGRBError(f"train.compile: true needs a {'C++' if device_type == 'cpu' else 'C'} compiler "
                    f"on PATH at run time ({'Inductor' if device_type == 'cpu' else 'Triton'} "
                    f"builds its kernels with it) and none of {', '.join(names)} was found. "
                    "Install one (gcc), or set train.compile: false.")
