"""Launcher settings, kept in <runs>/.launcher/settings.json so a reopened launcher keeps them."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mgrb.store import contracts
from mgrb.store.contracts import RunFileError
from mgrb.version import version

from .records import write_json

LOCAL, DOCKER = "local", "docker"  # local processes, or containers through the Docker SDK
MODES = (LOCAL, DOCKER)
MODE_NAMES = {LOCAL: "local-process", DOCKER: "Docker"}  # "... mode" in messages


# Docker's reference grammar, short of the registry host's full syntax: [host[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
                             r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")
SHM_SIZE = re.compile(r"^[1-9][0-9]{0,5}[bkmg]?$", re.I)  # as `docker run --shm-size` takes it

# The image's CUDA variants, as the Makefile's CUDA= names them:
# `make image` builds mgrb-artifact:<version> (torch built for CUDA 13), `make image CUDA=12`
# mgrb-artifact:<version>-cu12 (CUDA 12.8) for older drivers. Each needs this driver branch.
CUDA_VARIANTS = ("13", "12")
CUDA_DRIVERS = {"13": 580, "12": 525}
CUDA_TAGS = {"13": "", "12": "-cu12"}
IMAGE_NAME = "mgrb-artifact"  # the Makefile's IMAGE
# The image setting's default before the variants: every settings.json saved since holds it
# (all fields are saved), so it is read as "the image `make image` builds", as it was meant.
LEGACY_DEFAULT_IMAGE = "mgrb-artifact:0.1.0"


def default_image(cuda: str) -> str:
    """The image `make image CUDA=<cuda>` builds for this version."""
    return f"{IMAGE_NAME}:{version()}{CUDA_TAGS.get(cuda, '')}"


def driver_major(driver: str | None) -> int | None:
    """'535.104.05' -> 535; None for nothing read or a version in another form."""
    head = (driver or "").strip().split(".")[0]
    return int(head) if head.isdigit() else None


def _gpu_indices(value) -> str | None:
    return None if value is None else contracts.list_of(contracts.integer(0, 1023), longest=64)(value)


# What settings.json may hold: a runs folder from elsewhere brings its own, and each value
# reaches a process or a container. Keys this version does not know are left alone.
CONTRACT = contracts.mapping({
    "mode": (contracts.one_of(*MODES), False),
    "gpus": (_gpu_indices, False),
    "runs_per_gpu": (contracts.integer(1, 16), False),
    "stall_after_s": (contracts.number(10, 10**7), False),
    "image": (contracts.text(longest=256), False),
    "cuda": (contracts.one_of(*CUDA_VARIANTS), False),
    "data_dir": (contracts.text(longest=4096), False),
    "shm_size": (contracts.text(longest=32), False),
})


@dataclass
class Settings:
    mode: str = LOCAL                   # or DOCKER
    gpus: list[int] | None = None       # GPU indices to use; None: every GPU the panel sees
    runs_per_gpu: int = 1               # runs packed on one GPU (or at once on the CPU)
    stall_after_s: float = 600.0        # no events for this long: shown as stalled
    image: str = ""                     # docker mode; "": the image of the CUDA variant
    cuda: str = "13"                    # docker mode: the image's CUDA variant, "13" or "12"
    data_dir: str = field(default_factory=lambda: os.environ.get("MGRB_DATA") or "data")
    shm_size: str = "16g"

    @classmethod
    def load(cls, runs_dir: Path) -> Settings:
        return cls.read(runs_dir)[0]

    @classmethod
    def read(cls, runs_dir: Path) -> tuple[Settings, str | None]:
        """The stored settings, or the defaults and why the stored ones were not used."""
        try:
            stored = contracts.read(CONTRACT, settings_path(runs_dir)) or {}
        except RunFileError as error:
            return cls(), f"{error}; the launcher uses its default settings"
        known = set(asdict(cls()))
        found = {k: v for k, v in stored.items() if k in known}
        if found.get("image") == LEGACY_DEFAULT_IMAGE:
            found["image"] = ""  # the old default: the variant's image (the same for CUDA 13)
        return cls(**found), None

    def save(self, runs_dir: Path) -> None:
        settings_path(runs_dir).parent.mkdir(parents=True, exist_ok=True)
        write_json(settings_path(runs_dir), asdict(self))

    def image_reference(self) -> str:
        """The image containers start from: the one typed in the settings, else the one
        `make image` builds for the chosen CUDA variant."""
        return self.image or default_image(self.cuda)

    def problems(self, driver: str | None = None) -> list[str]:
        """What is wrong with the settings, one line each. `driver`: the NVIDIA driver
        version of this machine where it is known, to check the CUDA variant against."""
        found = []
        if self.mode not in MODES:
            found.append(f"mode: one of {', '.join(MODES)}")
        if self.gpus is not None and not (isinstance(self.gpus, list) and all(
                isinstance(g, int) and g >= 0 for g in self.gpus)):
            found.append("gpus: GPU indices such as 0,1 (empty: all)")
        if not isinstance(self.runs_per_gpu, int) or not 1 <= self.runs_per_gpu <= 16:
            found.append("runs per GPU: a whole number from 1 to 16")
        if isinstance(self.stall_after_s, bool) or not isinstance(self.stall_after_s, (int, float)) \
                or not math.isfinite(self.stall_after_s) or not 10 <= self.stall_after_s <= 10**7:
            found.append("stalled after: 10 seconds to 10,000,000")
        if not isinstance(self.image, str) or (self.image and not IMAGE_REFERENCE.fullmatch(self.image)):
            found.append(f"Docker image: {str(self.image)[:80]!r} is not an image name such as "
                         f"{default_image('13')} (empty: the one `make image` builds)")
        if self.cuda not in CUDA_VARIANTS:
            found.append(f"CUDA variant: {str(self.cuda)[:20]!r} is neither 13 (NVIDIA driver R580 "
                         "or newer) nor 12 (driver R525 or newer)")
        if not isinstance(self.shm_size, str) or not SHM_SIZE.fullmatch(self.shm_size):
            found.append(f"shared memory: {str(self.shm_size)[:40]!r} is not a size such as 16g or 512m")
        if self.mode == DOCKER:
            found += self.data_dir_problems()
            driver_problem = self.driver_problem(driver)
            if driver_problem:
                found.append(driver_problem)
        return found

    def driver_problem(self, driver: str | None) -> str | None:
        """One line when the variant's image needs a newer NVIDIA driver than `driver` (this
        machine's, None where unknown). An image typed in the settings is not judged: its
        CUDA version is not known here."""
        major, needed = driver_major(driver), CUDA_DRIVERS.get(self.cuda)
        if self.image or major is None or needed is None or major >= needed:
            return None
        older = [c for c, branch in CUDA_DRIVERS.items() if major >= branch]
        advice = (f"choose CUDA {older[0]} in the settings (make image CUDA={older[0]})" if older
                  else f"update the driver to R{CUDA_DRIVERS['12']} or newer")
        return (f"Docker image: the CUDA {self.cuda} image needs NVIDIA driver R{needed} or newer; "
                f"this machine has {driver.strip()}: {advice}")

    def data_dir_problems(self) -> list[str]:
        """Docker mounts the data folder into every container: it must be a folder already
        (Docker would otherwise create it, owned by root)."""
        if not isinstance(self.data_dir, str) or not self.data_dir.strip():
            return ["data folder: a folder on this machine (Docker mode mounts it read-only)"]
        folder = Path(self.data_dir).expanduser()
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            return [f"data folder: {folder.resolve()} {what} (Docker mode mounts it read-only)"]
        return []


def settings_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / ".launcher" / "settings.json"


def parse_gpus(text: str) -> list[int] | None:
    """'' or 'all' -> None (all); '0,2' -> [0, 2]; raises ValueError naming the bad part."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    indices = []
    for part in text.replace(" ", ",").split(","):
        if part:
            if not part.isdigit():
                raise ValueError(f"{part!r} is not a GPU index")
            indices.append(int(part))
    return indices
