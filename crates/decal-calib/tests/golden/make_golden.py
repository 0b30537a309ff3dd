"""Golden values for decal-calib's temperature scaling of an m-sample predictive (TemperatureScaler::fit_sampled).

The objective is the mean validation NLL of p_T(y|x) = (1/m) sum_s softmax(z_s / T), written here in torch
(float64) directly from that formula; its derivative in u = log T comes from torch autograd. The optimum is
located independently of decal's method: a dense grid over log T picks the global minimum, then
scipy.optimize.brentq solves dL/du = 0 on the grid cell pair around it (xtol 1e-15); scipy's bounded Brent
minimiser (minimize_scalar) is run as a cross-check.

Fixtures (float64 .npy, per-sample logits laid out [m, N, K], labels int64 [N]):
- sampled_*: 400 examples, K = 5, m = 8, a noisy overconfident head whose samples disagree.
- pairs_*: 60 examples, K = 2, m = 2, where each example has one confident correct and one less confident
  wrong sample; its NLL is far from convex in 1/T (the second derivative in beta is reported).

Run (torch 2.11 + numpy from decal's cached venv, scipy from any venv with the same numpy):
    PYTHONPATH=/tmp/venv-h1/lib/python3.11/site-packages ~/.cache/decal/torch-2.11.0/bin/python make_golden.py
"""
import json
import os

import numpy as np
import scipy
import scipy.optimize
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_default_dtype(torch.float64)


def path(name):
    return os.path.join(HERE, name)


def fixture_sampled():
    rng = np.random.RandomState(20240611)
    n, k, m = 400, 5, 8
    y = rng.randint(0, k, size=n)
    # The head's "belief": the true class with probability 0.75, else a random class.
    belief = np.where(rng.rand(n) < 0.75, y, rng.randint(0, k, size=n))
    mean = 3.0 * np.eye(k)[belief] + rng.randn(n, k)
    z = 1.6 * mean[None, :, :] + 1.8 * rng.randn(m, n, k)
    return z.astype(np.float64), y.astype(np.int64)


def fixture_pairs():
    rng = np.random.RandomState(7)
    n, m = 60, 2
    y = rng.randint(0, 2, size=n)
    z = np.zeros((m, n, 2))
    for i in range(n):
        a = 4.0 + rng.rand() * 2.0  # the confident, correct sample
        b = 1.0 + rng.rand() * 1.5  # the less confident, wrong sample
        z[0, i, y[i]] = a
        z[1, i, 1 - y[i]] = b
    return z, y.astype(np.int64)


def nll(z, y, t):
    """Mean NLL of the m-sample predictive at temperature t (tensor)."""
    m = z.shape[0]
    logp = torch.log_softmax(z / t, dim=-1)  # [m, N, K]
    picked = logp.gather(2, y.view(1, -1, 1).expand(m, -1, 1)).squeeze(2)  # [m, N]
    return -(torch.logsumexp(picked, dim=0) - np.log(m)).mean()


def reference(z_np, y_np):
    z = torch.tensor(z_np)
    y = torch.tensor(y_np)

    def f(u):
        return float(nll(z, y, torch.tensor(u).exp()))

    def df(u):
        uu = torch.tensor(u, requires_grad=True)
        loss = nll(z, y, uu.exp())
        (g,) = torch.autograd.grad(loss, uu)
        return float(g)

    def d2_beta(beta):
        b = torch.tensor(beta, requires_grad=True)
        loss = nll(z, y, 1.0 / b)
        (g,) = torch.autograd.grad(loss, b, create_graph=True)
        (h,) = torch.autograd.grad(g, b)
        return float(h)

    grid = np.linspace(np.log(1 / 128), np.log(128), 4001)
    values = np.array([f(u) for u in grid])
    j = int(np.argmin(values))
    assert 0 < j < len(grid) - 1, "grid minimum on the edge"
    lo, hi = grid[j - 1], grid[j + 1]
    assert df(lo) < 0 < df(hi)
    u_star = scipy.optimize.brentq(df, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
    bounded = scipy.optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    betas = np.linspace(0.05, 3.0, 60)
    curv = [d2_beta(b) for b in betas]
    t_star = float(np.exp(u_star))
    probs_t2 = torch.softmax(z / 2.0, dim=-1).mean(0)[:3]  # first three rows of p_T at T = 2
    return {
        "temperature": t_star,
        "temperature_bounded_brent": float(np.exp(bounded.x)),
        "nll_before": f(0.0),
        "nll_after": f(u_star),
        "dnll_dlogt_at_optimum": df(u_star),
        "nll_at_t0.5": f(np.log(0.5)),
        "nll_at_t2": f(np.log(2.0)),
        "probs_t2_first3": probs_t2.flatten().tolist(),
        "min_d2nll_dbeta2_on_0.05_3": float(min(curv)),
        "max_d2nll_dbeta2_on_0.05_3": float(max(curv)),
        "grid_minimum_log_t": float(grid[j]),
    }


def main():
    out = {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__}
    for name, (z, y) in [("sampled", fixture_sampled()), ("pairs", fixture_pairs())]:
        np.save(path(f"{name}_logits.npy"), z)
        np.save(path(f"{name}_labels.npy"), y)
        out[name] = reference(z, y)
        out[name]["shape"] = list(z.shape)
    # m = 1: the first sample alone (an ordinary logits matrix). (The pairs fixture's first sample is always
    # right, so alone it separates the labels perfectly: no finite optimum, which the Rust test checks.)
    z, y = fixture_sampled()
    out["sampled_m1"] = reference(z[:1], y)
    with open(path("golden_sampled_ts.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
