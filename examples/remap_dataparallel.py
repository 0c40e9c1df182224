"""A checkpoint saved from ``nn.DataParallel`` (every key starts with ``module.``) loaded into a plain model.

    python examples/remap_dataparallel.py

The same from the command line: ``netscope diff dp.pt resnet18`` and
``netscope remap dp.pt resnet18 -o plain.pt --min-coverage 0.99``.
"""

from __future__ import annotations

import os
import tempfile

import torch
import torch.nn as nn
import torchvision

import netscope


def main() -> None:
    torch.manual_seed(0)
    trained = torchvision.models.resnet18(weights=None).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "dp.pt")
        torch.save({"state_dict": nn.DataParallel(trained).state_dict(), "epoch": 12}, path)

        model = torchvision.models.resnet18(weights=None).eval()
        print(netscope.diff(path, model).render("table"))  # headers only: no tensor bytes read
        report = netscope.load(path, model, strict=True, min_coverage=0.99)
        print("\n".join(report.summary_lines()))

    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        print("outputs identical:", torch.equal(model(x), trained(x)))


if __name__ == "__main__":
    main()
