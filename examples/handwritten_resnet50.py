"""A hand-written ResNet-50 whose state_dict naming differs from torchvision's ``resnet50``.

Same architecture, different names: every conv/bn(/relu) is an ``nn.Sequential`` (keys ``.0.weight``,
``.1.running_mean``), the projection is called ``shortcut`` instead of ``downsample``, the classifier
``fc`` sits inside a Sequential (``head.1``), and the stem conv has a bias torchvision does not have.
Run it to see netscope align it with torchvision::

    python examples/handwritten_resnet50.py
"""

from __future__ import annotations

import torch.nn as nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True, bias: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.reduce = conv_bn(cin, width, 1)
        self.spatial = conv_bn(width, width, 3, stride)  # stride on the 3x3, as torchvision does
        self.expand = conv_bn(width, cout, 1, relu=False)
        self.shortcut = conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.expand(self.spatial(self.reduce(x))) + self.shortcut(x))


class HandwrittenResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000, stem_bias: bool = True):
        super().__init__()
        self.stem = conv_bn(3, 64, 7, 2, bias=stem_bias)
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layer = []
            for i in range(blocks):
                layer.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(x)


def main() -> None:
    import torch
    import torchvision

    import netscope

    source = HandwrittenResNet50().eval()
    target = torchvision.models.resnet50(weights=None).eval()
    new_state_dict, report = netscope.remap(source.state_dict(), target)
    print(report.render("table", include_exact=False))
    target.load_state_dict(new_state_dict, strict=False)
    with torch.no_grad():
        source.stem[0].bias.zero_()  # the one tensor torchvision has no place for
        x = torch.randn(1, 3, 224, 224)
        print("max |difference| of outputs:", (source(x) - target(x)).abs().max().item())


if __name__ == "__main__":
    main()
