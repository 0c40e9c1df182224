"""Summarize a user-defined model through the Python API.

Run: python examples/summarize_custom_model.py
"""

import torch
import torch.nn as nn

import netscope


class TinyResNet(nn.Module):
    """A hand-written residual network with a shared block and a functional attention-like product."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = torch.relu(x + self.block(x))  # the same block again: a second row, parameters counted once
        return self.fc(self.pool(x).flatten(1))


if __name__ == "__main__":
    model = TinyResNet()
    report = netscope.summary(model, input_size=(1, 3, 32, 32))
    print(report)
    frame = report.to_dataframe()
    print("\nHeaviest calls by multiply-adds:")
    print(frame[frame.is_leaf].nlargest(3, "macs")[["name", "type", "output_shapes", "macs"]].to_string(index=False))
