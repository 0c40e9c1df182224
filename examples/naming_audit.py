"""Build the naming-audit acceptance models and print their audits.

Run: python examples/naming_audit.py [--format table|markdown|csv|json]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import weight_norm

import netscope


class Stages(nn.Module):
    """conv1/bn1 registered directly, again inside stage1, and stage1 again inside a DataParallel."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.stage1 = nn.Sequential(self.conv1, self.bn1)
        self.stage2 = nn.DataParallel(self.stage1)

    def forward(self, x):
        return self.stage2(x)


class LocalConvs(nn.Module):
    """Convs kept in a plain dict: invisible to state_dict(), .parameters() and .to()."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.local = {i: nn.Conv2d(4, 4, 3, padding=1) for i in range(3)}

    def forward(self, x):
        x = self.stem(x)
        for conv in self.local.values():
            x = conv(x)
        return x


class TinyLM(nn.Module):
    """Embedding tied to the output projection, plus a non-persistent buffer."""

    def __init__(self, vocab: int = 100, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleDict({"a": nn.Linear(dim, dim), "b": nn.Linear(dim, dim)})
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("position_ids", torch.arange(32), persistent=False)

    def forward(self, tokens):
        return self.head(self.blocks["b"](self.blocks["a"](self.embed(tokens))))


def acceptance_models():
    """name -> model, for the examples in issue 4."""
    return {
        "nested DataParallel": nn.DataParallel(Stages()),
        "convs in a plain dict": LocalConvs(),
        "torch.compile": torch.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))),
        "weight_norm parametrization": nn.Sequential(weight_norm(nn.Linear(4, 8)), nn.ReLU()),
        "tied embedding": TinyLM(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="table", choices=("table", "markdown", "csv", "json"))
    args = parser.parse_args()
    for label, model in acceptance_models().items():  # compiled models are never called: no compile
        print(netscope.audit_names(model, label=label).render(args.format))


if __name__ == "__main__":
    main()
