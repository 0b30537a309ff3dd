"""The seed's stage-2 loop in PyTorch, timed (run by bench/stage2_protocol.sh).

The seed (seed-system.md §8) trains every head of every seed for 40 epochs with the frozen body inside the
loop: each epoch, every training image is freshly augmented (random crop 32 with zero padding 4, horizontal
flip), normalised and passed through the body (eval mode, no gradients here: decal's faithful default; the
seed's train-mode drift costs the same), then the head takes an Adam step (lr 1e-4, batch 256); the
validation images go through the body too (the seed augments them, BUG-6) for the selection loss. Heads as
seed-system.md §6: TST = Linear(F, 3Z) → ReLU → Linear(3Z, Z) → Linear(Z, K); V-TST adds a second encoder
with a logsigmoid output for log σ², one sample per step, loss CE + KL/Z.

This measures `epochs` epochs of one seed per head on uint8 images already in memory (decoded once: the
seed's DataLoader also decodes JPEGs every epoch, so this is the loop's best case and the ratio a lower
bound) and random body weights (the cost does not depend on them), plus one evaluation pass over the test
images, and prints JSON: seconds per epoch per head kind and per evaluation.

Usage: python stage2_seed_loop.py <cnn | wrn-16-4> <threads> <epochs> [train_n val_n test_n]
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from train_speed import CNN, WRN  # noqa: E402  (the same bodies as decal's presets)

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def body_of(preset):
    if preset == "cnn":
        m = CNN()
        return m, 84, lambda x: F.relu(m.fc2(F.relu(m.fc1(torch.flatten(
            F.max_pool2d(F.relu(m.conv2(F.max_pool2d(F.relu(m.conv1(x)), 2))), 2), 1)))))
    if preset == "wrn-16-4":
        m = WRN(16, 4)
        return m, 256, lambda x: F.avg_pool2d(F.relu(m.bn(m.layer(m.init_conv(x)))), 8).flatten(1)
    raise SystemExit(f"unknown preset {preset}")


class Head(nn.Module):
    def __init__(self, f, z, k, variational):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(f, 3 * z), nn.ReLU(), nn.Linear(3 * z, z))
        self.var = nn.Sequential(nn.Linear(f, 3 * z), nn.ReLU(), nn.Linear(3 * z, z)) if variational else None
        self.dec = nn.Linear(z, k)

    def loss(self, h, y):
        mu = self.mu(h)
        if self.var is None:
            return F.cross_entropy(self.dec(mu), y)
        logvar = F.logsigmoid(self.var(h))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1) / mu.shape[1]
        return F.cross_entropy(self.dec(z), y) + kl.mean()


def augment(x):
    """Random crop 32 with zero padding 4 and horizontal flip, per image as torchvision's transforms do
    (uint8 NCHW → normalised float)."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    ij = torch.randint(0, 9, (n, 2)).tolist()
    out = torch.stack([padded[k, :, i:i + 32, j:j + 32] for k, (i, j) in enumerate(ij)])
    flip = torch.rand(n) < 0.5
    out = torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)
    return (out.float() / 255 - MEAN) / STD


def main():
    preset, threads, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n_train, n_val, n_test = (int(v) for v in (sys.argv[4:7] or (40000, 10000, 10000)))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, f, features = body_of(preset)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    train = torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=gen)
    val = torch.randint(0, 256, (n_val, 3, 32, 32), dtype=torch.uint8, generator=gen)
    test = torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=gen)
    ytr = torch.randint(0, 10, (n_train,), generator=gen)
    yva = torch.randint(0, 10, (n_val,), generator=gen)
    out = {"preset": preset, "threads": threads, "epochs_measured": epochs,
           "train": n_train, "val": n_val, "test": n_test, "torch": torch.__version__}
    for kind in ("tst", "vtst"):
        head = Head(f, 128, 10, kind == "vtst")
        opt = torch.optim.Adam(head.parameters(), lr=1e-4)
        start = time.perf_counter()
        for _ in range(epochs):
            for b in torch.randperm(n_train).split(256):
                with torch.no_grad():
                    h = features(augment(train[b]))
                loss = head.loss(h, ytr[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                total = 0.0
                for b in torch.arange(n_val).split(1000):
                    total += head.loss(features(augment(val[b])), yva[b]).item() * len(b)
        out[f"{kind}_epoch_s"] = (time.perf_counter() - start) / epochs
    start = time.perf_counter()
    with torch.no_grad():
        for b in torch.arange(n_test).split(1000):
            head.dec(head.mu(features((test[b].float() / 255 - MEAN) / STD)))
    out["eval_s"] = time.perf_counter() - start
    print(json.dumps(out))


if __name__ == "__main__":
    main()
