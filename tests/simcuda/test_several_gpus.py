"""What a run over several GPUs builds, on a simulated CUDA device: torch's SyncBatchNorm there,
the hand-written one on the CPU, checkpoints that move between them; DistributedDataParallel's
keywords on the torch at hand. The collectives themselves need NCCL and two GPUs
(`python -m benchmarks.gpu_check`, check g); the CPU path runs for real in tests/e2e."""

import torch
from torch import nn

from mgrb.training.distributed import buffer_keywords
from mgrb.training.models import IncrementalNet, build_backbone
from mgrb.training.syncbn import SyncedBatchNorm2d, synchronise_batch_norm


def _model():
    torch.manual_seed(0)
    return IncrementalNet(build_backbone("resnet_small", 3), 5)


def _norms(model):
    return {type(module) for module in model.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)}


def test_on_cuda_the_batch_norms_are_torchs_sync_batch_norm(simulated):
    plain = _model()
    synced = synchronise_batch_norm(_model(), "cuda:0").to("cuda:0")
    assert _norms(synced) == {nn.SyncBatchNorm}
    assert synced.backbone.stem[1].weight.device == torch.device("cuda", 0)
    assert list(synced.state_dict()) == list(plain.state_dict())


def test_on_the_cpu_they_are_the_hand_written_ones_with_the_same_checkpoint_keys():
    plain, cpu, cuda = _model(), synchronise_batch_norm(_model()), synchronise_batch_norm(_model(), "cuda")
    assert _norms(cpu) == {SyncedBatchNorm2d} and _norms(cuda) == {nn.SyncBatchNorm}
    assert list(cpu.state_dict()) == list(cuda.state_dict()) == list(plain.state_dict())
    cuda.load_state_dict(cpu.state_dict())  # a checkpoint moves from one to the other
    plain.load_state_dict(cuda.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(cpu.state_dict().values(),
                                                 plain.state_dict().values()))


def test_distributed_data_parallel_is_asked_in_the_words_of_the_torch_at_hand():
    from torch.nn.parallel import DistributedDataParallel

    class Torch211DDP:  # the signature before forward_sync_buffers (torch 2.11)
        def __init__(self, module, device_ids=None, output_device=None, dim=0,
                     broadcast_buffers=True, process_group=None):
            pass

    import inspect

    new = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    assert buffer_keywords(DistributedDataParallel) == (
        {"forward_sync_buffers": False} if new else {"broadcast_buffers": False})
    assert buffer_keywords(Torch211DDP) == {"broadcast_buffers": False}
