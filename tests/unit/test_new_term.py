"""The worked example of docs/architecture.md ("Adding a loss term"): a new term is one function
and one entry in the term table; here both live in this file alone, and a digits run of two
phases trains with it through the real trainer."""

import dataclasses
import json

import torch

from mgrb.config.experiment import parse_config
from mgrb.method import terms
from mgrb.store.runfolder import RunFolder
from mgrb.training.trainer import Trainer

CONFIG = """\
name: with_a_new_term
dataset: {name: digits}
protocol: {initial: 8, increment: 2, memory_total: 200}
train: {epochs: 1, milestones: [], stage2_epochs: 1, batch_size: 64, log_every: 1000}
hierarchy: {kind: vis, clusters: 2}
"""


def logit_norm(inputs: terms.StageInputs, batch: terms.Batch, reduce: terms.Reduce):
    """A made-up variant: the squared norm of each sample's logits, kept small."""
    return reduce(batch.logits.pow(2).sum(dim=1))


def test_a_term_added_from_outside_trains_a_phase(tmp_path, monkeypatch):
    seen = []

    def recorded(inputs, batch, reduce):
        seen.append(batch.logits.shape)
        return logit_norm(inputs, batch, reduce)

    monkeypatch.setitem(terms.TERMS, "logitnorm",
                        terms.Term("norm", recorded, lambda inputs, parts: 1e-3))
    config = parse_config(CONFIG)
    config = dataclasses.replace(config, method=dataclasses.replace(
        config.method, losses="ce+distill+hierloss+logitnorm"))
    run = RunFolder(tmp_path / "run")
    run.prepare(config.to_dict())
    results = Trainer(config, run, torch.device("cpu")).train()

    # phase 1 trains with plain cross-entropy; phase 2 with the four terms
    assert {shape[1] for shape in seen} == {10}, seen
    epochs = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text()
              .splitlines() if '"epoch"' in line and '"stage1"' in line]
    assert [sorted(e["losses"]) for e in epochs] == [
        ["cls", "total"], ["cls", "kd", "mg", "norm", "total"]]
    assert len(results["phases"]) == 2 and 0 < results["avg_top1"] <= 100
