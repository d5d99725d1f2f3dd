"""MobileNetV2 (Sandler et al. 2018, "Inverted Residuals and Linear Bottlenecks"), width 1.0, in
plain torch with torchvision's module names, so that torchvision's ``mobilenet_v2-b0353104.pth``
loads with ``strict=True``. Only the network: ``g2l.video.frame_encoders.MobileNetV2Encoder`` finds
and checks the weights and turns frames into features with it."""

from __future__ import annotations

import torch
from torch import nn


class ConvNormActivation(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6; torchvision's ``Conv2dNormActivation`` names (0, 1, 2)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when ``expand_ratio == 1``) -> depthwise 3x3 -> linear project (1x1) -> BN.

    The input is added back when the block keeps both resolution and channels.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(in_channels, hidden, kernel_size=1))
        layers += [
            ConvNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), width 1.0, with torchvision's module names.

    ``forward`` gives ImageNet logits ``(f, 1000)``; ``features_pooled`` the ``(f, 1280)``
    global average pool before the classifier.
    """

    # expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, last_channels: int = 1280):
        super().__init__()
        layers: list[nn.Module] = [ConvNormActivation(3, 32, stride=2)]
        in_channels = 32
        for expand_ratio, out_channels, repeats, first_stride in self.SETTING:
            for repeat in range(repeats):
                stride = first_stride if repeat == 0 else 1
                layers.append(InvertedResidual(in_channels, out_channels, stride=stride, expand_ratio=expand_ratio))
                in_channels = out_channels
        layers.append(ConvNormActivation(in_channels, last_channels, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(last_channels, num_classes))

    def features_pooled(self, images: torch.Tensor) -> torch.Tensor:
        """``(f, 3, h, w)`` -> ``(f, 1280)``."""
        return self.features(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features_pooled(images))  # (f, 1000)
