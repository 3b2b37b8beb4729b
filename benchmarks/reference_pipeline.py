"""A stage-1 step written the way the original code runs it, for `make bench` to compare
against: PIL transforms through torchvision in a DataLoader with 2 workers, float32, and per
batch a Python loop over samples and classes that builds soft labels and class weights from
`.item()` values. Written for this benchmark from the description in docs/method.md and the issue;
it is deliberately slow in the same places the original is, and nowhere else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)


def loop_regularizer(logits, labels, groups, beta):
    """L_MG the original's way: per sample, per class, a soft label built in Python."""
    total = 0.0
    for i in range(logits.shape[0]):
        y = labels[i].item()
        raw = [0.0 if j == y else (-beta / 2 if groups[j] == groups[y] else -beta)
               for j in range(logits.shape[1])]
        norm = sum(math.exp(v) for v in raw)
        soft = torch.tensor([math.exp(v) / norm for v in raw], device=logits.device)
        log_p = F.log_softmax(logits[i], dim=0)
        total = total + (torch.xlogy(soft, soft) - soft * log_p).sum()
    return total / logits.shape[0]


class PILCifar(torch.utils.data.Dataset):
    """CIFAR-shaped uint8 images served one by one through PIL, as torchvision's CIFAR does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(15), transforms.ToTensor(),
            transforms.Normalize(CIFAR100_MEAN, CIFAR100_STD)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class ReferenceStep:
    """The last phase of CIFAR-100 10/10 (90 old + 10 new classes), original style."""

    def __init__(self, model, teacher, images, labels, *, batch: int, n_old: int, beta: float,
                 temperature: float, dscale: float, groups: list[int], counts: list[int]):
        self.model, self.teacher, self.device = model, teacher, next(model.parameters()).device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        self.n_old, self.beta, self.temperature, self.dscale = n_old, beta, temperature, dscale
        self.groups, self.counts = groups, counts
        self.loader = torch.utils.data.DataLoader(
            PILCifar(images, labels), batch_size=batch, shuffle=True, num_workers=2,
            drop_last=True, persistent_workers=True)

    def run(self, count: int) -> None:
        done = 0
        while done < count:
            for x, y in self.loader:
                self._step(x.to(self.device), y.to(self.device))
                done += 1
                if done == count:
                    return

    def _step(self, x, y):
        logits = self.model(x)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        n_seen = logits.shape[1]
        eta = (n_seen - 1) / n_seen
        weight = torch.tensor([(1 - eta) / (1 - eta ** self.counts[y[i].item()])
                               for i in range(len(y))], device=self.device)
        cls = (F.cross_entropy(logits, y, reduction="none") * weight).sum()
        mg = loop_regularizer(logits, y, self.groups, self.beta)
        t = self.temperature
        p = F.softmax(teacher_logits / t, dim=1)
        kd = -(p * F.log_softmax(logits[:, :self.n_old] / t, dim=1)).sum(1).mean() * t * t
        alpha = self.n_old / n_seen
        loss = self.dscale * alpha * kd + (1 - alpha) * cls + mg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
