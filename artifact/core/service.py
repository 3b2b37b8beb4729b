"""The launcher's state and actions, with no UI: the Textual app calls `poll()` from a worker
thread about once a second and renders what it returns; tests call it directly.

The launcher's policy lives here, not in the screens: what may be queued (`launch`), what a
stop means for a run in each status (`request_stop`), which runs a report can cover
(`reportable`). The UI calls these and shows their answers.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mgrb.errors import MGRBError
from mgrb.store.contracts import RunFileError

from .experiments import BrokenExperiment, ExperimentRow, load_experiments
from .explain import explain
from .gpu import GpuMonitor, GpuSnapshot, in_container, runs_on_gpus
from .docker_launcher import DockerLauncher
from .launcher import CPU, FULL, LocalLauncher, Queue, choose_slot
from .records import read_launch
from .runs import (ACTIVE, BROKEN, FINISHED, QUEUED, RUNNING, SLURM_ACTIVE, RunState,
                   RunWatcher)
from .settings import DOCKER, LOCAL, MODE_NAMES, Settings
from .slurm import SlurmWatch
from .visibility import Plan, plan_slots, settings_problems

# what a stop may be tried on: a queued run leaves the queue; a broken run may still have a
# process the launcher can prove to be its own
STOPPABLE = (*ACTIVE, QUEUED, BROKEN)


@dataclass
class Snapshot:
    experiments: list[ExperimentRow]
    broken: list[BrokenExperiment]
    states: dict[str, RunState]
    gpu: GpuSnapshot
    gpu_users: dict[str, list[int]] = field(default_factory=dict)  # run name -> GPU indices
    messages: list[str] = field(default_factory=list)              # to show once


@dataclass(frozen=True)
class Answer:
    """What an action did, in words for the user; done False: it did nothing (a warning)."""
    text: str
    done: bool = True


@dataclass(frozen=True)
class Launched:
    """What a launch did: the names now waiting for a free slot, and one line per name that
    was not queued ("name: why")."""
    queued: list[str]
    refused: list[str]


class Service:
    def __init__(self, *, experiments_dir: Path, runs_dir: Path, gpu_monitor: GpuMonitor | None = None,
                 docker_runner_factory=None, environ=None):
        self.experiments_dir, self.runs_dir = Path(experiments_dir), Path(runs_dir)
        self.settings, self._settings_damage = Settings.read(self.runs_dir)
        self.queue = Queue(self.runs_dir)
        # CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER inherited from a job scheduler live here
        self.environ = os.environ if environ is None else environ
        # the ways to start runs (launcher.py): by the settings' mode to start one, by
        # launch.json's to follow or stop it
        self.local = LocalLauncher(self.runs_dir, environ=self.environ)
        self.docker = DockerLauncher(runs_dir=self.runs_dir, experiments_dir=self.experiments_dir,
                                     settings=self.settings, runner_factory=docker_runner_factory)
        self.gpu_monitor = gpu_monitor or GpuMonitor()
        self._lock = threading.Lock()  # poll() runs in a worker; actions come from the UI
        self._messages: list[str] = []
        self._standing: set[str] = set()  # GPU problems already told, while they last
        self._gpu: GpuSnapshot | None = None
        self._states: dict[str, RunState] = {}  # as the last poll saw them: what actions judge by
        self.slurm = SlurmWatch()
        self.reload()

    # -- reading -----------------------------------------------------------------------
    def reload(self) -> None:
        rows = load_experiments(self.experiments_dir, self.runs_dir)
        self.experiments = [row for row in rows if isinstance(row, ExperimentRow)]
        self.broken = [row for row in rows if isinstance(row, BrokenExperiment)]
        self.watchers = {e.name: RunWatcher(e) for e in self.experiments}

    def experiment(self, name: str) -> ExperimentRow:
        return self.watchers[name].experiment

    def poll(self, now: float | None = None) -> Snapshot:
        # squeue may take seconds: asked before taking the lock that the UI's actions need
        self.slurm.refresh([folder for watcher in list(self.watchers.values())
                            for folder in watcher.experiment.run_folders])
        with self._lock:
            for launcher in (self.local, self.docker):
                launcher.reap()
            gpu = self._gpu = self.gpu_monitor.read()
            states = {name: self._refresh(watcher, now) for name, watcher in self.watchers.items()}
            queued = self.queue.names()
            for name in queued:
                if name in states and states[name].status not in (*ACTIVE, *SLURM_ACTIVE):
                    states[name].status, states[name].detail = QUEUED, "waiting for a free slot"
            self._start_queued(states, self._plan(gpu))
            messages, self._messages = self._messages, []
            self._states = states
            return Snapshot(self.experiments, self.broken, states, gpu,
                            self._gpu_users(states, gpu), messages)

    def _refresh(self, watcher: RunWatcher, now: float | None) -> RunState:
        try:
            state = watcher.refresh(stall_after_s=self.settings.stall_after_s,
                                    probe=self._probe, now=now)
            self.slurm.apply(state, watcher.experiment.run_folders)
            return state
        except Exception as error:  # noqa: BLE001 - one run folder must not blank the table
            return RunState(BROKEN, detail=f"the launcher cannot read this run's folder: "
                                           f"{explain(error)}")

    def _gpu_users(self, states: dict[str, RunState], gpu: GpuSnapshot) -> dict[str, list[int]]:
        runs = []
        for name, state in states.items():
            if state.status in ACTIVE:
                launch = state.launch or {}
                runs.append((name, launch.get("host_pid") or state.pid, launch.get("gpu_uuid")))
        return runs_on_gpus(gpu, runs, container=in_container())

    # -- actions -------------------------------------------------------------------------
    def launch(self, names: list[str]) -> Launched:
        """Queue the experiments; they start as slots free up. An unknown experiment, one
        whose data is missing, or one whose Slurm job may be at work is refused; the next poll
        drops from the queue a run that is already at work (`_start_queued`)."""
        refused, queued = [], []
        with self._lock:
            for name in names:
                if name not in self.watchers:
                    refused.append(f"{name}: no such experiment")
                    continue
                if name in self._states and self._states[name].status in SLURM_ACTIVE:
                    refused.append(_under_slurm(name, self._states[name]))
                    continue
                experiment = self.watchers[name].experiment
                if not experiment.data_present:
                    refused.append(f"{name}: not launched. {experiment.data_help}")
                    continue
                queued.append(name)
            self.queue.add(queued)
        return Launched(queued, refused)

    def dequeue(self, name: str) -> None:
        with self._lock:
            self.queue.remove(name)

    def request_stop(self, name: str, force: bool = False) -> Answer:
        """What a stop (force: a kill) means for a run as the last poll saw it: a queued run
        leaves the queue, a run that may have a process is stopped (`stop`), and any other
        is left alone."""
        state = self._states.get(name)
        if state is not None and state.status in SLURM_ACTIVE:
            return Answer(f"{name} is Slurm's to stop ({state.detail}): scancel its job",
                          done=False)
        if state is None or state.status not in STOPPABLE:
            return Answer(f"{name} is not running", done=False)
        if state.status == QUEUED:
            self.dequeue(name)
            return Answer(f"{name}: taken out of the queue")
        return Answer(f"{name}: {self.stop(name, force=force)}")

    def stop(self, name: str, force: bool = False) -> str:
        """Signals only what is proven to be the run's, from the run folder as it is now (not
        as the last poll saw it); otherwise the answer says why it cannot be stopped."""
        experiment = self.experiment(name)
        try:
            launch = read_launch(experiment.base_folder)
        except RunFileError:
            launch = None  # the local launcher says what is wrong with it, and tries the lock
        # without a readable launch record the local launcher says what is wrong with it, and
        # tries the run's lock
        return self._launcher(launch["mode"] if launch else LOCAL).stop(experiment, force=force)

    def _launcher(self, mode: str):
        """The launcher of a mode; looked up at each use, so that a test may replace one."""
        return self.docker if mode == DOCKER else self.local

    def _probe(self, experiment: ExperimentRow, launch: dict):
        return self._launcher(launch["mode"]).probe(experiment, launch)

    def save_settings(self, settings: Settings) -> list[str]:
        """What is wrong with `settings`, or [] once they are saved. A switch to Docker mode
        is saved only when a Docker daemon answers: otherwise every launch would fail."""
        problems = settings.problems()
        refusal = None if problems else self.mode_refusal(settings)
        if refusal:
            return [refusal]
        with self._lock:
            if not problems:
                gpu = self._gpu or self.gpu_monitor.read()
                problems = [f"GPUs: {problem}"
                            for problem in settings_problems(gpu.gpus, settings.gpus, self.environ)]
            if problems:
                return problems
            try:
                settings.save(self.runs_dir)
            except (OSError, MGRBError) as error:  # the settings in force stay as they were
                return [f"Settings not saved: {explain(error)}"]
            self.settings, self._settings_damage = settings, None
            self.docker.use(settings)  # the image or data folder may have changed
        return []

    def reportable(self, names: list[str]) -> list[str]:
        """The chosen experiments a report can cover: those finished when last polled."""
        states = self._states
        return [n for n in names if n in states and states[n].status == FINISHED]

    def write_report(self, names: list[str], out_dir: Path) -> Path:
        """The reproduction report of the chosen experiments that have finished; ValueError
        when none has."""
        from mgrb.reporting.report import write_report

        states = self._states
        groups = {n: states[n].results for n in self.reportable(names)}
        if not groups:
            raise ValueError("none of the chosen experiments has finished")
        return write_report(groups, out_dir)

    # -- scheduling ----------------------------------------------------------------------
    def _plan(self, gpu: GpuSnapshot) -> Plan:
        plan = plan_slots(gpu.gpus, self.settings.gpus, self.environ)
        damaged = [d for d in (self._settings_damage, self.queue.damage) if d]
        # Checked every poll, told once: again only after the problem has gone and come back.
        standing = list(plan.problems) + damaged + self.slurm.notes
        self._messages += [p for p in standing if p not in self._standing]
        self._standing = set(standing)
        return plan

    def _start_queued(self, states: dict[str, RunState], plan: Plan) -> None:
        if plan.blocked:
            for name in self.queue.names():
                if name in states and states[name].status == QUEUED:
                    states[name].detail = plan.blocked
            return
        gpus = [] if plan.cpu else list(plan.gpus)
        running_on = [(s.launch or {}).get("gpu") for s in states.values() if s.status in ACTIVE]
        for name in self.queue.names():
            state = states.get(name)
            if state is not None and state.status in SLURM_ACTIVE:  # queued before a poll saw it
                self.queue.remove(name)
                self._messages.append(_under_slurm(name, state))
                continue
            if state is None or state.status in ACTIVE or (
                    state.status == FINISHED and not state.launch):
                self.queue.remove(name)
                continue
            slot = choose_slot(running_on, gpus, self.settings.runs_per_gpu)
            if slot == FULL:
                return
            index = None if slot == CPU else slot
            self.queue.remove(name)
            try:
                self._start(self.watchers[name].experiment, index, plan.uuids.get(index))
            except Exception as error:  # noqa: BLE001 - shown to the user, the queue goes on
                state.detail = f"could not start: {explain(error)}"
                self._messages.append(f"{name}: {state.detail}")
                continue
            running_on.append(index)
            state.status, state.detail = RUNNING, "starting"

    def _start(self, experiment: ExperimentRow, gpu: int | None, uuid: str | None) -> None:
        self._launcher(self.settings.mode).start(experiment, gpu, uuid,
                                                 gpu_share=self.settings.runs_per_gpu)

    def mode_refusal(self, settings: Settings) -> str | None:
        """One line saying why `settings` cannot switch to Docker mode (no daemon answers
        through the SDK), None when they can or do not switch. Slow while a daemon does not
        answer: called outside the lock, and by the UI from a worker thread."""
        if settings.mode != DOCKER or self.settings.mode == DOCKER:
            return None
        from .docker_runner import DockerUnavailable

        try:
            self.docker.runner(settings).reachable()
        except DockerUnavailable as error:
            return (f"Docker mode not saved ({error.cause}); the launcher stays in "
                    f"{MODE_NAMES[self.settings.mode]} mode.")
        return None


def _under_slurm(name: str, state: RunState) -> str:
    """Why a run whose Slurm job may be at work is not started here; the detail names the job."""
    return (f"{name}: not launched: {state.detail}. Started here as well, two trainers would "
            "write its run folder; cancel the Slurm job first (scancel) to run it here.")
