"""Backbones (docs/method.md section 2) and the network whose classifier is renewed each phase."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet of BasicBlocks ending in global average pooling to a feature vector.

    stem "cifar": 3x3 conv at stride 1, no max-pool (the paper's choice for every data set);
    stem "imagenet": 7x7 conv at stride 2 and a 3x3 max-pool (an option, not the paper's).
    """

    def __init__(self, blocks: list[int], widths: list[int], in_channels: int = 3,
                 stem: str = "cifar"):
        super().__init__()
        first = widths[0]
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, first, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(first), nn.ReLU(inplace=True))
        elif stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, first, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(first), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            raise ValueError(f"unknown stem {stem!r}")
        stages, channels = [], first
        for index, (count, width) in enumerate(zip(blocks, widths)):
            stride = 1 if index == 0 else 2
            for block in range(count):
                stages.append(BasicBlock(channels, width, stride if block == 0 else 1))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        # Global average pooling as a mean: AdaptiveAvgPool2d's CUDA backward has no
        # deterministic kernel, so strict deterministic mode would refuse it.
        return self.stages(self.stem(x)).mean(dim=(2, 3))


BACKBONES = {
    "resnet18": ([2, 2, 2, 2], [64, 128, 256, 512]),
    "resnet34": ([3, 4, 6, 3], [64, 128, 256, 512]),
    # Small enough to train the digits demo on two CPU cores in a minute or two.
    "resnet_small": ([1, 1], [32, 64]),
}


def build_backbone(name: str, in_channels: int = 3, stem: str = "cifar") -> ResNet:
    blocks, widths = BACKBONES[name]
    return ResNet(blocks, widths, in_channels, stem)


def new_classifier(feature_dim: int, num_classes: int) -> nn.Linear:
    """Linear classifier with Xavier-normal weights and zero bias (docs/method.md section 2)."""
    layer = nn.Linear(feature_dim, num_classes)
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class IncrementalNet(nn.Module):
    def __init__(self, backbone: ResNet, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classifier = new_classifier(backbone.feature_dim, num_classes)

    def forward(self, x):
        return self.classifier(self.backbone(x))

    def renew_classifier(self, num_classes: int, keep_old_weights: bool = False) -> None:
        """A classifier for `num_classes`; the original starts it afresh every phase."""
        old = self.classifier
        fresh = new_classifier(self.backbone.feature_dim, num_classes).to(old.weight.device)
        if keep_old_weights:
            with torch.no_grad():
                fresh.weight[: old.out_features] = old.weight
                fresh.bias[: old.out_features] = old.bias
        self.classifier = fresh
