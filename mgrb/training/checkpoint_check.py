"""What a checkpoint must hold before a run resumes from it.

Loading is safe already (weights_only: tensors and plain containers, never code), but a file
that loads safely may still lie: a phase that is not a number, a missing generator state, a
tensor of another shape, an RNG state a generator cannot take, or a position past the last
phase with made-up results, which would write a results.json of numbers nothing trained.
`problem` says what is wrong, and the run folder then treats the file as damaged: a warning,
and the checkpoint before it (RunFolder.load_checkpoint)."""

from __future__ import annotations

import torch

STAGES = ("start", "stage1", "stage2")
_RESULT_KEYS = ("top1", "top5")  # old_top1 is None in phase 0


def problem(state: dict, *, model: torch.nn.Module, phases: int, epochs: int,
            stage2_epochs: int, evaluations: list[dict]) -> str | None:
    """Why `state` cannot be this run's checkpoint, or None. `model` is the run's freshly
    built network (the backbone must match it tensor for tensor; the classifier is rebuilt
    from the checkpoint's own rows, which must fit the backbone's features). `evaluations`:
    the "eval" events of the run folder's log, which a checkpoint past the last phase (a run
    that ended before writing results.json) must agree with: resuming from it trains
    nothing, so its results must be ones this folder's run evaluated."""
    for check in (_position, _generators, _networks, _results):
        found = check(state, model=model, phases=phases, epochs=epochs,
                      stage2_epochs=stage2_epochs)
        if found:
            return found
    if state["phase"] == phases:
        return _evaluated_here(state["phase_results"], evaluations)
    return None


def _evaluated_here(results: list[dict], evaluations: list[dict]) -> str | None:
    logged = {event.get("phase"): event.get("top1") for event in evaluations}
    for number, entry in enumerate(results):
        if logged.get(number) != entry["top1"]:
            return (f"it holds the results of every phase, and phase {number + 1}'s top-1 "
                    f"{entry['top1']!r} is not what this folder's events.jsonl logged "
                    f"({logged.get(number)!r}): resuming would report numbers nothing here "
                    "trained")
    return None


def _integer(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _position(state, *, phases, epochs, stage2_epochs, **_) -> str | None:
    if not _integer(state.get("phase"), 0, phases):  # `phases`: every phase evaluated
        return f"phase {state.get('phase')!r} is not one of this run's 0 to {phases}"
    if state.get("stage") not in STAGES:
        return f"stage {state.get('stage')!r} is not one of {', '.join(STAGES)}"
    if not _integer(state.get("epoch"), 0, max(epochs, stage2_epochs)):
        return f"epoch {state.get('epoch')!r} is outside 0 to {max(epochs, stage2_epochs)}"
    if not _integer(state.get("iteration"), 0, 10**9):
        return f"iteration {state.get('iteration')!r} is not a batch number"
    return None


def _byte_state(value) -> bool:
    """A generator state as torch writes one: a contiguous uint8 vector that a CPU
    generator accepts (a stride-0 or wrongly sized one makes set_state fail or lie)."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        return False
    if not value.is_contiguous() or value.numel() != torch.Generator().get_state().numel():
        return False
    return True


def _generators(state, **_) -> str | None:
    for key in ("generator", "torch_rng"):
        if not _byte_state(state.get(key)):
            return f"{key} is not a random generator's state"
    epoch_generator = state.get("epoch_generator")
    if epoch_generator is not None and not _byte_state(epoch_generator):
        return "epoch_generator is not a random generator's state"
    return None


def _networks(state, *, model, **_) -> str | None:
    for key in ("model", "teacher"):
        weights = state.get(key)
        if key == "teacher" and weights is None:
            continue
        found = _network(key, weights, model)
        if found:
            return found
    return None


def _network(key: str, weights, model) -> str | None:
    if not isinstance(weights, dict):
        return f"{key} holds no network weights"
    expected = model.state_dict()
    backbone = {name for name in expected if not name.startswith("classifier.")}
    missing = sorted(backbone - set(weights))
    if missing:
        return f"{key} lacks {missing[0]} (and {len(missing) - 1} more)" if len(missing) > 1 \
            else f"{key} lacks {missing[0]}"
    for name in backbone:
        tensor = weights[name]
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[name].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            return f"{key}.{name} is {shape}, where this run's network has {tuple(expected[name].shape)}"
    weight, bias = weights.get("classifier.weight"), weights.get("classifier.bias")
    features = expected["classifier.weight"].shape[1]
    if not (isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[1] == features
            and 0 < weight.shape[0] <= 100_000):
        return f"{key}.classifier.weight is not a classifier over {features} features"
    if not (isinstance(bias, torch.Tensor) and bias.shape == (weight.shape[0],)):
        return f"{key}.classifier.bias does not match its weight"
    extra = sorted(set(weights) - set(expected))
    if extra:
        return f"{key} holds {extra[0]}, which this run's network does not have"
    return None


def _results(state, **_) -> str | None:
    """One evaluation per phase before the checkpoint's: a checkpoint at the start of phase p
    (or within it) has p of them."""
    results = state.get("phase_results")
    if not isinstance(results, list) or len(results) != state["phase"]:
        count = len(results) if isinstance(results, list) else results
        return (f"phase_results holds {count!r} evaluations where a checkpoint of phase "
                f"{state['phase']} has {state['phase']}")
    for number, entry in enumerate(results):
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(key), (int, float)) for key in _RESULT_KEYS):
            return f"phase_results[{number}] is not an evaluation"
    hierarchy = state.get("hierarchy")
    if hierarchy is not None and not isinstance(hierarchy, dict):
        return "hierarchy is not a hierarchy"
    if not isinstance(state.get("wall_time_s"), (int, float)) or state["wall_time_s"] < 0:
        return "wall_time_s is not a duration"
    return None
