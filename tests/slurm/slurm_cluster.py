"""Starting, stopping and asking a cluster of scripts/local-slurm.sh (Debian's Slurm 22.05 and
munge) from the tests of tests/slurm, and finding what of it still runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "local-slurm.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = "slurmctld slurmd slurm-client munge"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
# what start may take on a busy two-core machine, installing the packages on the first run
START_TIMEOUT = 600


def packages_missing() -> bool:
    return any(shutil.which(tool, path=SBIN_PATH) is None
               for tool in ("munged", "slurmctld", "slurmd", "sinfo", "srun", "squeue", "scontrol"))


def alive(pid: int) -> bool:
    """The process runs: it exists and is not a zombie (an exited daemon whose parent, init
    here, has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _processes() -> dict[int, int]:
    """pid -> parent pid of every process."""
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def marked_processes(folder: Path) -> list[int]:
    """Every running process of that cluster, as local-slurm.sh stop finds them: the daemons
    and their forks (started with LOCAL_SLURM_DIR=<folder> in their environment), each job's
    slurmstepd (it blanks its environment; it holds the cluster's slurmd log open), and the job
    processes below those."""
    folder = folder.resolve()
    mark = b"LOCAL_SLURM_DIR=" + str(folder).encode()
    parents = _processes()
    found = set()
    for pid in parents:
        proc = Path(f"/proc/{pid}")
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                found.add(pid)
                continue
            first = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not (first.startswith("slurmstepd") or first.endswith("/slurmstepd")):
                continue
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"{folder}/log/slurmd.log":
                    found.add(pid)
                    break
        except OSError:
            continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    queue = list(found)
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return sorted(pid for pid in found if alive(pid))


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """check() until it returns something true, polling; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {value!r})")
        time.sleep(interval)


@dataclass
class LocalSlurm:
    """A running cluster: its folder and the environment its clients need (SLURM_CONF)."""

    folder: Path
    env: dict[str, str]
    start_seconds: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def setting(self, key: str) -> str:
        match = re.search(rf"^{key}=(\S+)$", self.conf.read_text(), re.MULTILINE)
        assert match, f"no {key} in {self.conf}"
        return match.group(1)

    # A client's call waits for slurmctld (and it for slurmd), each given MessageTimeout (10 s)
    # and retries; on a loaded two-core machine a scancel was seen to take over 30 s.
    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def run_when_accepted(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """run(), again while Slurm answers that the job "can not be altered now, try again
        later" (a job in a passing state, e.g. while another task of its array changes)."""
        def attempt():
            result = self.run(*args, check=False)
            if result.returncode == 0:
                return result
            assert "try again later" in result.stderr, \
                f"{' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
            return None

        return wait_for(attempt, timeout, f"{' '.join(args)} accepted", interval=0.5)

    def sbatch(self, *args: str) -> str:
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """scontrol show job, one dict per job (an array job: one per task); [] once unknown."""
        result = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        if result.returncode != 0:
            return []
        return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in result.stdout.splitlines() if line.strip()]

    def state(self, job_id: str) -> str | None:
        jobs = self.jobs(job_id)
        return jobs[0]["JobState"] if jobs else None

    def wait_state(self, job_id: str, states: str | tuple[str, ...], timeout: float = 20) -> dict[str, str]:
        states = (states,) if isinstance(states, str) else states

        def reached():
            jobs = self.jobs(job_id)
            return jobs[0] if jobs and jobs[0]["JobState"] in states else None
        return wait_for(reached, timeout, f"job {job_id} {'/'.join(states)} (now {self.state(job_id)})")

    def leftovers(self) -> list[int]:
        """This cluster's processes that still run: its recorded daemons and anything else
        that carries its mark."""
        return sorted({pid for pid in self.pids.values() if alive(pid)} | set(marked_processes(self.folder)))


def script(action: str, folder: Path, timeout: float = 60, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | env_vars
    return subprocess.run(["bash", str(SCRIPT), action, str(folder)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def start_cluster(folder: Path) -> LocalSlurm:
    if os.geteuid() != 0 and packages_missing():
        pytest.skip(f"needs Debian's {PACKAGES} and is not root: run scripts/local-slurm.sh start DIR "
                    f"once as root (it installs them) or apt-get install --no-install-recommends {PACKAGES}")
    t0 = time.monotonic()
    result = script("start", folder, timeout=START_TIMEOUT)
    seconds = time.monotonic() - t0
    if result.returncode != 0:
        pytest.fail(f"local-slurm.sh start {folder}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    folder = folder.resolve()
    export = f"export SLURM_CONF={folder}/slurm.conf"
    assert result.stdout.strip().splitlines()[-1] == export, result.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_CONF"] = str(folder / "slurm.conf")
    pids = {name: int((folder / "pids" / name).read_text()) for name in DAEMONS}
    return LocalSlurm(folder=folder, env=env, start_seconds=seconds, pids=pids)


def stop_cluster(cluster: LocalSlurm) -> float:
    """Stops it and checks that nothing of it is left; returns how long stop took."""
    t0 = time.monotonic()
    result = script("stop", cluster.folder)
    seconds = time.monotonic() - t0
    assert result.returncode == 0, f"stop: exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert not cluster.leftovers(), f"left running after stop: {cluster.leftovers()}"
    return seconds
