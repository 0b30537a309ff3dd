"""Reference values for decal-train's stage-1 losses and optimisers, computed with PyTorch.

Run with the project's torch (2.11, CPU):
    ~/.cache/decal/torch-2.11.0/bin/python crates/decal-train/tests/golden/stage1_make_golden.py
It rewrites stage1_golden.json next to this file. The Rust tests (tests/stage1_losses.rs,
tests/stage1_optim.rs) read the JSON and never need Python.

Losses follow the seed's src/utils/focal_loss.py (seed-system.md §7.3) with gamma built as a
per-example tensor; label smoothing is F.cross_entropy(label_smoothing=eps).
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
out = {"torch_version": torch.__version__}

# ---- loss fixture: 8 examples, 5 classes, float32; row 0 has p_t == 1 exactly, others span p_t.
logits = torch.randn(8, 5, dtype=torch.float32) * 2.0
logits[0] = torch.tensor([120.0, 0.0, 0.0, 0.0, 0.0])
logits[1] = torch.tensor([-3.0, 4.0, 0.0, 0.0, 0.0])  # true class 0 -> p_t tiny
labels = torch.tensor([0, 0, 2, 3, 4, 1, 0, 2])
out["loss_logits"] = logits.flatten().tolist()
out["loss_labels"] = labels.tolist()
out["loss_shape"] = list(logits.shape)


def seed_focal(x, y, gammas, probs, adaptive):
    """The seed's FocalLoss, with BUG-10 fixed (last bin's gamma for p_t >= last threshold)."""
    logpt = F.log_softmax(x, dim=1).gather(1, y.view(-1, 1)).view(-1)
    pt = logpt.exp()
    gamma_dic = dict(zip(probs, gammas))
    gl = []
    for i in range(pt.shape[0]):
        p = pt[i].item()
        if not adaptive:
            gl.append(gammas[0])
            continue
        g = None
        for thr in sorted(gamma_dic):
            if p < thr or p == 1:
                g = gamma_dic[thr]
                break
        if g is None:
            g = gamma_dic[sorted(gamma_dic)[-1]]
        gl.append(g)
    gamma = torch.tensor(gl, dtype=x.dtype)
    return (-1 * (1 - pt) ** gamma * logpt).mean(), pt, gl


cases = []
for name, fn in [
    ("ce", lambda x: F.cross_entropy(x, labels)),
    ("ls0.1", lambda x: F.cross_entropy(x, labels, label_smoothing=0.1)),
    ("fl3", lambda x: seed_focal(x, labels, [3.0], [1.0], False)[0]),
    ("fla53", lambda x: seed_focal(x, labels, [5.0, 3.0], [0.2, 1.0], True)[0]),
    ("fla53_bug10", lambda x: seed_focal(x, labels, [5.0, 3.0], [0.2, 0.5], True)[0]),
]:
    x = logits.clone().requires_grad_(True)
    loss = fn(x)
    loss.backward()
    cases.append({"name": name, "loss": loss.item(), "grad": x.grad.flatten().tolist()})
out["losses"] = cases
_, pt, gl = seed_focal(logits, labels, [5.0, 3.0], [0.2, 0.5], True)
out["fla53_bug10_pt"] = pt.tolist()
out["fla53_bug10_gammas"] = gl

# ---- optimiser fixture: a linear softmax classifier trained for 6 steps on a fixed batch.
torch.manual_seed(1)
X = torch.randn(16, 6)
Y = torch.randint(0, 4, (16,))
W0 = torch.randn(4, 6) * 0.3
B0 = torch.randn(4) * 0.1
out["opt_x"] = X.flatten().tolist()
out["opt_y"] = Y.tolist()
out["opt_w0"] = W0.flatten().tolist()
out["opt_b0"] = B0.flatten().tolist()


def run(make_opt, lr_fn, clip=None, steps=6):
    w = W0.clone().requires_grad_(True)
    b = B0.clone().requires_grad_(True)
    opt = make_opt([w, b])
    traj = []
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_fn(t)
        opt.zero_grad()
        loss = F.cross_entropy(X @ w.t() + b, Y)
        loss.backward()
        norm = None
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_([w, b], clip).item()
        opt.step()
        traj.append({"w": w.detach().flatten().tolist(), "b": b.detach().flatten().tolist(), "norm": norm})
    return traj


opt_cases = [
    ("adam_seed", lambda p: torch.optim.Adam(p, lr=1e-4, foreach=False), lambda t: 1e-4, None),
    ("adam_wd", lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1, foreach=False), lambda t: 0.05, None),
    ("adamw", lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1, foreach=False), lambda t: 0.05 / (t + 1), None),
    ("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False), lambda t: 0.1, None),
    ("sgd_nesterov_wd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=False), lambda t: 0.1, None),
    ("sgd_plain_clip", lambda p: torch.optim.SGD(p, lr=0.5, foreach=False), lambda t: 0.5, 0.3),
]
out["optim"] = []
for name, mk, lr_fn, clip in opt_cases:
    out["optim"].append({"name": name, "lrs": [lr_fn(t) for t in range(6)], "clip": clip, "trajectory": run(mk, lr_fn, clip)})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stage1_golden.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path)
