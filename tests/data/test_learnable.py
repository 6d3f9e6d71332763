from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import data


@pytest.mark.slow
def test_small_convnet_learns_shapes() -> None:
    """Learnable: a tiny convnet trained for a fixed number of steps (not seconds, so a busy machine cannot
    fail it) separates the classes that the raw-pixel linear model cannot (test_shapes.py)."""
    torch.manual_seed(0)
    spec = "shapes:train=3000,test=500,size=24"
    tr = data.load(spec, split="train", val_fraction=0)
    te = data.load(spec, split="test", val_fraction=0)

    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    net = nn.Sequential(
        block(3, 24), nn.MaxPool2d(2), block(24, 48), nn.MaxPool2d(2), block(48, 96), block(96, 96),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10),
    )  # fmt: skip
    loader = data.Loader(tr, batch_size=64, augment="flip", seed=0, drop_last=True)
    epochs = 6
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * len(loader), pct_start=0.2)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in data.Loader(te, 250, shuffle=False))
    assert correct / len(te) >= 0.85, correct / len(te)  # measured 0.934 (about 20 CPU-seconds)
