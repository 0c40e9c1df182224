"""A LeNet-style net fed a 64x64 image: netscope says where it breaks, why, and which input size works.

Run: python examples/lenet_diagnosis.py
"""

import torch
import torch.nn as nn

import netscope
from netscope.errors import ForwardError


class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = self.flatten(x)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def main() -> None:
    try:
        netscope.summary(LeNet(), (1, 3, 64, 64), device="meta")
    except ForwardError as err:  # the diagnosis comes attached to the error
        print(err.diagnosis.render())


if __name__ == "__main__":
    main()
