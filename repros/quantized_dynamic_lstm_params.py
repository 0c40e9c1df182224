"""A dynamic-quantized LSTM's packed weights are not counted: the lstm row shows 0 parameters.

Oracle: the float twin's sum(p.numel()) (quantization keeps every weight and bias).
Run: PYTHONPATH=. python repros/quantized_dynamic_lstm_params.py
"""
import warnings

import torch
import torch.nn as nn

import netscope

warnings.filterwarnings("ignore")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


float_model = Net()
expected = sum(p.numel() for p in float_model.parameters())
q = torch.ao.quantization.quantize_dynamic(float_model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
got = netscope.summary(q, torch.randn(2, 5, 8)).totals.total_params
print(f"netscope total_params={got}, float twin={expected}")
assert got == expected, "packed LSTM weights missing from the parameter count"
