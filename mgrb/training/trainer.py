"""The trainer: phases, the two stages of each, evaluation, checkpoints and the event log.

The method is one object (`mgrb.method.phase.MGRB`) called through hooks: `hierarchy` at a
phase's start, `begin_phase` (class weights, soft targets, the teacher), then each stage's loss
and whether stage 2 runs. The teacher's copy, the classifier's growth and the class means are
the trainer's, since they are the model's.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import torch

from mgrb.config.schema import Experiment
from mgrb.errors import RunFolderError
from mgrb.method.phase import MGRB, ClassCounts, PhaseContext
from mgrb.store.contracts import RUN_FILES_FORMAT
from mgrb.store.runfolder import RunFolder
from mgrb.training import evaluation
from mgrb.training.checkpoints import CheckpointWriter
from mgrb.training.control import (STOP_REQUESTED, Interrupted, Position, StageLosses,
                                   learning_rate, require_finite)
from mgrb.training.distributed import Group, LogitsModule
from mgrb.training.checkpoint_check import problem as checkpoint_problem
from mgrb.training.environment import device_name, device_uuid
from mgrb.training.models import IncrementalNet, build_backbone
from mgrb.training.numerics import Compiler, Numerics, applied, share_compile_cache
from mgrb.training.progress import Progress
from mgrb.training.results import build_results
from mgrb.training.stage1 import Stage1Loop
from mgrb.training.stage2 import Stage2Loop
from mgrb.training.stream import open_stream
from mgrb.training.syncbn import synchronise_batch_norm
from mgrb.data.protocol import phase_split

__all__ = ["STOP_REQUESTED", "Interrupted", "Position", "Trainer", "learning_rate",
           "require_finite"]  # the names callers (cli, tests, benchmarks) take from here

CHECKPOINT_VERSION = 1


class Trainer:
    def __init__(self, config: Experiment, run: RunFolder, device: torch.device,
                 progress: Progress | None = None, group: Group | None = None):
        """`group`: this process's place in a run over several processes (distributed.py);
        there, every process but rank 0 gets a `run` that writes nothing."""
        self.config, self.run, self.device = config, run, device
        self.group = group or Group()
        self.progress = progress or Progress(quiet=True)
        self.train_cfg, self.method = config.train, MGRB(config)

    # -- set-up ------------------------------------------------------------------------
    def _load_data(self) -> None:
        self.stream = open_stream(self.config, self.device, self.progress)

    def _build_model(self) -> None:
        torch.manual_seed(self.train_cfg.seed)
        backbone = build_backbone(self.config.model.backbone, self.stream.data.channels,
                                  self.config.model.stem)
        model = IncrementalNet(backbone, self.stream.protocol.seen(0))
        if self.group.several:  # the statistics of the global batch, as one process has them
            model = synchronise_batch_norm(model, self.device)
        # device and layout in one conversion: one copy of each weight
        self._set_model(model.to(self.device, memory_format=self.numerics.memory_format))
        self.teacher = None
        self.generator = torch.Generator().manual_seed(self.train_cfg.seed)

    def _set_model(self, model: IncrementalNet) -> None:
        self.model = model
        self._student_backbone = self.compiler.wrap(model.backbone)

    def _set_teacher(self, teacher: IncrementalNet | None) -> None:
        self.teacher = teacher
        self._teacher_backbone = None if teacher is None else self.compiler.wrap(teacher.backbone)

    def _train_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The student's logits in a training step: through DistributedDataParallel, which
        averages the gradients, where the run has several processes."""
        return self._ddp(x) if self.group.several else self.logits(x)

    def _numerics(self) -> dict:
        described = self.numerics.describe()
        return {**described, "processes": self.group.world} if self.group.several else described

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The student's fp32 logits (numerics.py: bf16 backbone at most, fp32 classifier)."""
        return self.numerics.logits(self._student_backbone, self.model.classifier, x)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.numerics.logits(self._teacher_backbone, self.teacher.classifier, x)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.numerics.channels_last else x

    def _adamw(self, parameters) -> torch.optim.AdamW:
        return torch.optim.AdamW(parameters, lr=self.train_cfg.lr,
                                 weight_decay=self.train_cfg.weight_decay,
                                 fused=self.numerics.fused_optimizer or None)

    def _stage1_groups(self) -> list[dict]:
        """The backbone's and the classifier's parameters as two groups of one optimiser:
        the original has an optimiser for each, with its own rate in the warm-up
        (quirks.warmup_backbone_only); AdamW's maths is per parameter, so the two are one."""
        return [{"params": list(self.model.backbone.parameters()), "name": "backbone"},
                {"params": list(self.model.classifier.parameters()), "name": "classifier"}]

    # -- checkpoints -------------------------------------------------------------------
    def _state(self, position: Position, optimizer) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "phase": position.phase, "stage": position.stage,
            "epoch": position.epoch, "iteration": position.iteration,
            "epoch_generator": self.stage1.epoch_generator,
            "model": self.model.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "hierarchy": self.hierarchy, "phase_results": self.phase_results,
            "wall_time_s": self._wall_time(),
        }

    def _save(self, position: Position, optimizer=None) -> None:
        """A host copy now; hashing and writing go on in the background while training
        continues, and the checkpoint's event follows once it is on disk. Rank 0 alone
        writes: every process holds the same weights, optimizer state and generator."""
        self._last_checkpoint = time.monotonic()
        if not self.group.leader:
            return
        self.checkpoints.submit(self._state(position, optimizer),
                                {"event": "checkpoint", "phase": position.phase,
                                 "stage": position.stage, "epoch": position.epoch,
                                 "iteration": position.iteration})

    def _checkpoint_due(self) -> bool:
        minutes = self.train_cfg.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self._last_checkpoint >= 60 * minutes

    def _network_like(self, state: dict) -> IncrementalNet:
        """The model's copy (device and layout included) holding `state`."""
        network = copy.deepcopy(self.model)
        network.renew_classifier(state["classifier.weight"].shape[0])
        network.load_state_dict(state)
        return network

    def _refuse_a_silent_restart(self) -> None:
        """No checkpoint, yet the log says this folder's run trained past a checkpoint: its
        checkpoints were deleted or moved. Starting over must be asked for."""
        if self.run.restart_if_damaged:
            return
        saved = [e for e in self.run.recorded_events() if e.get("event") in ("checkpoint", "eval")]
        if saved:
            raise RunFolderError(
                f"{self.run.path}: its events.jsonl records training up to phase "
                f"{max(e.get('phase', 0) for e in saved if isinstance(e.get('phase'), int)) + 1}"
                f" and {len(saved)} checkpoints or evaluations, but {self.run.checkpoints} holds "
                "no checkpoint (deleted or moved?). Nothing was changed. Put the checkpoints "
                "back to resume, or run the same command with --restart to train it again from "
                "the beginning.")

    def _checkpoint_problem(self, state: dict) -> str | None:
        try:
            return checkpoint_problem(
                state, model=self.model, phases=self.stream.protocol.num_phases,
                epochs=self.train_cfg.epochs, stage2_epochs=self.train_cfg.stage2_epochs,
                evaluations=[e for e in self.run.recorded_events() if e.get("event") == "eval"])
        except (KeyError, TypeError, AttributeError) as error:  # a shape the checks did not foresee
            return f"it is not laid out as this project's checkpoints ({type(error).__name__}: {error})"

    def _restore(self, state: dict) -> tuple[Position, dict | None]:
        self._set_model(self._network_like(state["model"]))
        if state["teacher"] is not None:
            self._set_teacher(self._frozen(self._network_like(state["teacher"])))
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.hierarchy = state["hierarchy"]
        self.phase_results = state["phase_results"]
        self._time_before = state["wall_time_s"]
        self._resumed_epoch_generator = state["epoch_generator"]
        position = Position(state["phase"], state["stage"], state["epoch"], state["iteration"])
        return position, state["optimizer"]

    def _wall_time(self) -> float:
        return self._time_before + time.monotonic() - self._started

    @staticmethod
    def _frozen(network):
        network = network.eval()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        return network

    # -- the run -----------------------------------------------------------------------
    def train(self) -> dict:
        self.numerics = Numerics.of(self.train_cfg, self.device)
        if self.numerics.compile:
            share_compile_cache(self.run.path)
        self.compiler = Compiler(self.numerics.compile, self.device.type)
        with applied(self.numerics), CheckpointWriter(self.run) as self.checkpoints:
            return self._train()

    def _train(self) -> dict:
        self._started, self._time_before = time.monotonic(), 0.0
        self._last_checkpoint = self._started
        self._load_data()
        self._build_model()
        self.hierarchy, self.phase_results, self._resumed_epoch_generator = None, [], None
        position, optimizer_state = Position(), None
        # rank 0 reads (and judges) the checkpoints; the others get its state
        state = self.group.broadcast(
            self.run.load_checkpoint(self.progress.warn, check=self._checkpoint_problem)
            if self.group.leader else None)
        if state is None and self.group.leader:
            self._refuse_a_silent_restart()
        if state is not None:
            position, optimizer_state = self._restore(state)
            self.progress.message(f"resuming {position.described()}")
            self.run.append_event({"event": "resumed", "phase": position.phase,
                                   "stage": position.stage, "epoch": position.epoch})
        else:
            self.run.append_event({"event": "started", "format": RUN_FILES_FORMAT,
                                   "phases": self.stream.protocol.num_phases,
                                   "experiment": self.config.name,
                                   "device": device_name(self.device),
                                   "device_uuid": device_uuid(self.device),
                                   "numerics": self._numerics()})
        self.stage1 = Stage1Loop(
            train=self.train_cfg, quirks=self.config.quirks, model=self.model, logits=self._train_logits,
            prepare=self._prepare, group=self.group,
            images=self.stream.train_set, augment=self.stream.augment, generator=self.generator,
            run=self.run, progress=self.progress, phases=self.stream.protocol.num_phases,
            save=self._save, checkpoint_due=self._checkpoint_due,
            epoch_generator=self._resumed_epoch_generator)
        self.stage2 = Stage2Loop(
            train=self.train_cfg, late_decay=self.config.quirks.late_decay,
            generator=self.generator, run=self.run, progress=self.progress,
            phases=self.stream.protocol.num_phases, stop_requested=self.group.stop_requested)
        for phase in range(position.phase, self.stream.protocol.num_phases):
            if self.group.stop_requested():
                raise Interrupted(f"stopped before phase {phase + 1}; its checkpoint is saved")
            if position.phase != phase:
                position, optimizer_state = Position(phase), None
            self._train_phase(position, optimizer_state)
        self.checkpoints.flush()  # a failed last write surfaces before results.json exists
        return self._finish()

    def _train_phase(self, position: Position, optimizer_state) -> None:
        phase = position.phase
        n_old, n_seen = self.stream.protocol.old(phase), self.stream.protocol.seen(phase)
        stream = self.stream
        split = phase_split(stream.protocol, phase, stream.train_labels, stream.roles,
                            stream.test_labels)
        if position.stage == "start":
            self._begin_phase(phase, split, n_seen)
            position = Position(phase, "stage1", 0)
        counts = ClassCounts(
            data=self.stream.data_counts, per_class=self.stream.per_class,
            holdout=self.stream.holdout,
            phase=torch.bincount(self.stream.train_labels[split.train], minlength=n_seen))
        method = self.method.begin_phase(PhaseContext(
            phase=phase, n_old=n_old, n_seen=n_seen, num_classes=self.stream.num_classes,
            counts=counts, hierarchy=self.hierarchy, device=self.device,
            teacher=None if self.teacher is None else self.teacher_logits))
        self.progress.message(f"phase {phase + 1}/{self.stream.protocol.num_phases}: classes "
                              f"{n_old}-{n_seen - 1} new, {split.train.numel()} training "
                              f"images, hierarchy {self.hierarchy['kind']}")
        if position.stage == "stage1":
            # (re)built each phase: the classifier has grown, and it makes rank 0's weights
            # every process's (after a resume too)
            self._ddp = self.group.wrap(LogitsModule(self.model, self.logits), self.device)
            optimizer = self._adamw(self._stage1_groups())
            if optimizer_state is not None:
                optimizer.load_state_dict(_two_groups(optimizer_state, optimizer))
            self.stage1.run_phase(position, method, split, optimizer)
            position = Position(phase, "stage2", 0)
        if method.runs_stage2 and self.train_cfg.stage2_epochs:
            self._stage2(phase, method, split)
        self._evaluate(phase, n_old, split)
        self.compiler.after_phase(phase, self.run.append_event, self.progress.warn)
        self._save(Position(phase + 1, "start", 0))

    def _begin_phase(self, phase: int, split, n_seen: int) -> None:
        """Teacher, fresh classifier and hierarchy at the start of a phase."""
        if phase > 0:
            self._set_teacher(self._frozen(copy.deepcopy(self.model)))
            keep = not self.config.quirks.fresh_classifier
            self.model.renew_classifier(n_seen, keep_old_weights=keep)
        # clustered once, by rank 0, and handed to the others
        self.hierarchy = self.group.broadcast(self.method.hierarchy(
            phase=phase, data=self.stream.data, order=self.stream.order,
            n_seen=n_seen, class_means=lambda: self._class_means(split.balanced, n_seen))
            if self.group.leader else None)
        self.run.append_event({"event": "hierarchy", "phase": phase,
                               "hierarchy": self.method.public(self.hierarchy)})

    @torch.no_grad()
    def _features(self, indices: torch.Tensor, augment=None):
        """Backbone features in eval mode; `augment`: the images augmented first, drawn on the
        run's generator."""
        self.model.eval()
        features, labels = [], []
        for x, y in self.stream.train_set.batches(indices, self.train_cfg.eval_batch_size,
                                           shuffle=False, augment=augment,
                                           generator=self.generator if augment else None):
            with self.numerics.autocast():
                features.append(self._student_backbone(self._prepare(x)).float())
            labels.append(y)
        return torch.cat(features), torch.cat(labels)

    def _class_means(self, indices: torch.Tensor, n_seen: int) -> torch.Tensor:
        features, labels = self._features(indices)
        sums = torch.zeros(n_seen, features.shape[1], device=features.device)
        sums.index_add_(0, labels, features)
        return sums / torch.bincount(labels, minlength=n_seen).clamp(min=1)[:, None]

    # -- stage 2 -------------------------------------------------------------------------
    def _stage2(self, phase: int, method: StageLosses, split) -> None:
        if self.train_cfg.stage2_augment:  # new features every epoch, of newly augmented images
            augment = self.stream.augment
            if augment.random_resized_crop:
                # ImageNet-100: the original's transform of the balanced set
                # (code/LoadImagenet100.py) squashes each image to 224x224 (Resize([224, 224]))
                # before its RandomResizedCrop, which stage 1's transform does not
                augment = dataclasses.replace(augment, resize_first=True)

            def epoch_features():
                return self._features(split.balanced, augment=augment)
        else:  # the test transform: the same features every epoch, computed once
            fixed = self._features(split.balanced)

            def epoch_features():
                return fixed
        self.stage2.run_phase(phase, self.model.classifier, method, epoch_features,
                              optimizer=self._adamw(self.model.classifier.parameters()))
        # every process trained the same classifier on the same features; rank 0's is kept
        self.group.broadcast_parameters(self.model.classifier)

    # -- evaluation and results ----------------------------------------------------------
    def _evaluate(self, phase: int, n_old: int, split) -> None:
        self.model.eval()
        mine = split.test[self.group.share(split.test.numel())]  # each process a part
        logits, labels = evaluation.predict(lambda x: self.logits(self._prepare(x)),
                                            self.stream.test_set, mine,
                                            self.train_cfg.eval_batch_size)
        logits, labels = self.group.gather_rows(logits), self.group.gather_rows(labels)
        report = evaluation.accuracy_report(logits, labels, n_old)
        result = {"phase": phase, "seen_classes": self.stream.protocol.seen(phase), **report,
                  "hierarchy": self.method.public(self.hierarchy),
                  "train_images": int(split.train.numel()),
                  "balanced_images": int(split.balanced.numel()),
                  "test_images": int(split.test.numel())}
        self.phase_results.append(result)
        self.run.append_event({"event": "eval", "phase": phase,
                               "seen_classes": result["seen_classes"],
                               **{k: report[k] for k in ("top1", "top5", "old_top1", "new_top1")}})
        old = "" if report["old_top1"] is None else f", old {report['old_top1']:.2f}"
        self.progress.message(f"phase {phase + 1}/{self.stream.protocol.num_phases} "
                              f"({result['seen_classes']} classes): top-1 {report['top1']:.2f}"
                              f", top-5 {report['top5']:.2f}{old}, new {report['new_top1']:.2f}")

    def _finish(self) -> dict:
        results = build_results(self.config, self.stream, self.phase_results,
                                 wall_time_s=self._wall_time(), device=self.device,
                                 numerics=self._numerics(),
                                 compile_report=self.compiler.report())
        self.run.write_results(results)
        self.run.append_event({"event": "finished", "avg_top1": results["avg_top1"],
                               "last_top1": results["last_top1"],
                               "wall_time_s": results["wall_time_s"]})
        return results


def _two_groups(state: dict, optimizer) -> dict:
    """A stage-1 optimiser state saved before the backbone and the classifier had a group
    each (one group over model.parameters(), the backbone's first) split the same way, so
    that such a checkpoint still resumes."""
    if len(state["param_groups"]) != 1 or len(optimizer.param_groups) != 2:
        return state
    (group,) = state["param_groups"]
    cut = len(optimizer.param_groups[0]["params"])
    groups = [{**group, "params": group["params"][:cut], "name": "backbone"},
              {**group, "params": group["params"][cut:], "name": "classifier"}]
    return {**state, "param_groups": groups}
