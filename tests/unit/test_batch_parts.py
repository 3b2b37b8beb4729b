"""Each process's part of a global batch (a run over several processes): the parts are
contiguous, cover the batch once, carry the very images and augmentations one process would
have, and a part may be empty when a batch has fewer images than processes."""

import pytest
import torch

from mgrb.data.augment import Augment
from mgrb.data.batches import TensorBatches, contiguous_part


@pytest.mark.parametrize("count, world", [(10, 3), (2, 4), (0, 2), (7, 1), (128, 8)])
def test_parts_are_contiguous_cover_everything_once_and_differ_by_at_most_one(count, world):
    parts = [contiguous_part(count, rank, world) for rank in range(world)]
    assert [i for part in parts for i in range(count)[part]] == list(range(count))
    sizes = [part.stop - part.start for part in parts]
    assert max(sizes) - min(sizes) <= 1


def _draw(batches, part, batch_size=5):
    generator = torch.Generator().manual_seed(3)
    augment = Augment(crop_padding=2, flip=True, rotation=10)
    return list(batches.batches(torch.arange(11), batch_size, shuffle=True, augment=augment,
                                generator=generator, part=part))


def test_tensor_batches_parts_are_the_whole_batches_cut_in_pieces():
    images = torch.randint(0, 256, (11, 3, 8, 8), dtype=torch.uint8)
    batches = TensorBatches(images, torch.arange(11), (0.5,) * 3, (0.25,) * 3, "cpu")
    whole = _draw(batches, None)
    parts = [_draw(batches, (rank, 3)) for rank in range(3)]
    assert [p[-1][1].shape[0] for p in parts] == [1, 0, 0]  # the last batch holds 1 image
    for number, (x, y) in enumerate(whole):
        torch.testing.assert_close(torch.cat([p[number][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[number][1] for p in parts]), y)
