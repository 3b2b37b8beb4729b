"""Faults for `mgrb run` processes started by tests, at the process boundary: Python loads
this module at start-up when a test puts this folder on PYTHONPATH. MGRB_TEST_FAULTS names an
experiment and what happens in its second phase: "a=oom,b=crash,c=nan"; "d=oom_rank1": out of
memory in the process of rank 1 only (a run over several processes). Nothing else loads it."""

import os

FAULTS = dict(item.split("=", 1) for item in os.environ.get("MGRB_TEST_FAULTS", "").split(",")
              if "=" in item)

if FAULTS:
    import torch

    import mgrb.training.trainer

    _train_phase = mgrb.training.trainer.Trainer._train_phase

    def _faulty_train_phase(self, position, optimizer_state):
        fault = FAULTS.get(self.config.name) if position.phase == 1 else None
        if fault == "oom_rank1":
            fault = "oom" if os.environ.get("RANK") == "1" else None
        if fault == "oom":  # what the CUDA caching allocator raises
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 "
                                         "has a total capacity of 79.19 GiB")
        if fault == "crash":
            os.abort()
        return _train_phase(self, position, optimizer_state)

    mgrb.training.trainer.Trainer._train_phase = _faulty_train_phase

    if "nan" in FAULTS.values():
        import mgrb.method.phase

        _stage1_loss = mgrb.method.phase.PhaseLosses.stage1_loss

        def _diverging_stage1_loss(self, *args, **kwargs):
            terms = _stage1_loss(self, *args, **kwargs)
            if self.phase == 1:  # the loss of the second phase turns to NaN
                terms["total"] = terms["total"] * float("nan")
            return terms

        mgrb.method.phase.PhaseLosses.stage1_loss = _diverging_stage1_loss

# MGRB_TEST_STALL_DECODE=NAME: decoding the image file called NAME never ends (every process
# that loads this module, the prepare's spawned decoders included), so a test can kill a
# `mgrb data prepare` mid-way on any machine. (A FIFO did this once; the tree listing now
# refuses FIFOs before anything is opened.)
if os.environ.get("MGRB_TEST_STALL_DECODE"):
    import time
    from pathlib import Path

    import mgrb.data.folder

    _decode_image = mgrb.data.folder.decode_image

    def _stalling_decode_image(path, size):
        if Path(path).name == os.environ["MGRB_TEST_STALL_DECODE"]:
            time.sleep(3600)
        return _decode_image(path, size)

    mgrb.data.folder.decode_image = _stalling_decode_image
