"""PyTorch twin of crates/decal-train/examples/train_speed.rs (run by bench/train_speed.sh).

Same models as decal's presets (the seed's CNN, seed-system.md §5.2; the DeepMind-style WRN of §5.1 at
depth 16 / width 4), same work per step: forward in train mode, cross-entropy, backward, Adam(lr=1e-4)
step (single-tensor path, as decal's optimiser); inference = no-grad forward in eval mode. Random
normalised 32x32 inputs, so data loading is excluded.

Usage: python train_speed.py <preset: cnn | wrn-16-4> <batch> <threads> <train_steps> <infer_steps> [precision]
precision: fp32 (default) or bf16 (torch.autocast("cpu", torch.bfloat16) around the forward passes, as
decal's --precision bf16).
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CNN(nn.Module):
    def __init__(self, k=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, k)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin, momentum=0.01)
        self.conv0 = nn.Conv2d(cin, cout, 3, stride, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, momentum=0.01)
        self.conv1 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.stride = stride
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if cin != cout else None

    def forward(self, x):
        a = F.relu(self.bn0(x))
        pad = (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1)
        out = self.conv1(F.relu(self.bn1(self.conv0(F.pad(a, pad)))))
        return (self.shortcut(a) if self.shortcut is not None else x) + out


class WRN(nn.Module):
    def __init__(self, depth=16, width=4, k=10):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * width, 32 * width, 64 * width]
        self.init_conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        layers = []
        for g, stride in enumerate([1, 2, 2]):
            for b in range(n):
                layers.append(Block(ch[g] if b == 0 else ch[g + 1], ch[g + 1], stride if b == 0 else 1))
        self.layer = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(ch[3], momentum=0.01)
        self.logits = nn.Linear(ch[3], k)

    def forward(self, x):
        x = F.relu(self.bn(self.layer(self.init_conv(x))))
        return self.logits(F.avg_pool2d(x, 8).flatten(1))


def main():
    preset, batch, threads, train_steps, infer_steps = sys.argv[1], *map(int, sys.argv[2:6])
    precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
    amp = dict(device_type="cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = CNN() if preset == "cnn" else WRN(*map(int, preset.split("-")[1:]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=False)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def train_step():
        opt.zero_grad()
        with torch.autocast(**amp):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    model.train()
    for _ in range(2):
        train_step()
    t = time.perf_counter()
    for _ in range(train_steps):
        train_step()
    train_ips = train_steps * batch / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad(), torch.autocast(**amp):
        for _ in range(2):
            model(x).sum().item()
        t = time.perf_counter()
        for _ in range(infer_steps):
            model(x).sum().item()
        infer_ips = infer_steps * batch / (time.perf_counter() - t)
    print(json.dumps({"impl": "pytorch " + torch.__version__, "model": preset, "precision": precision,
                      "batch": batch, "threads": threads,
                      "train_images_per_sec": round(train_ips, 1), "infer_images_per_sec": round(infer_ips, 1)}))


if __name__ == "__main__":
    main()
