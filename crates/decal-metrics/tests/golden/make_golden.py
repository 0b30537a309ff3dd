"""Golden values for decal-metrics (and decal-calib) from independent references.

Two stages, because torchmetrics 1.1.2 needs torch while scikit-learn 1.1.3 needs numpy < 1.25:

  # stage 1: torch 2.11 + torchmetrics 1.1.2 (pip install --target /tmp/tm-only torchmetrics==1.1.2
  #          lightning-utilities==0.9.0 packaging typing_extensions --no-deps)
  PYTHONPATH=/tmp/tm-only ~/.cache/decal/torch-2.11.0/bin/python make_golden.py torch
  # stage 2: python3.11 venv with numpy 1.24.4, scipy 1.11, scikit-learn 1.1.3
  /tmp/venv-A/bin/python make_golden.py sklearn

Stage 1 writes the fixture arrays (*.npy) and golden_torch.json; stage 2 reads the arrays and writes
golden_sklearn.json. References used:
  - torchmetrics 1.1.2 `multiclass_calibration_error` (norm l1/max/l2) = `torchmetrics` membership;
  - gpleiss `_ECELoss` (bins (lo, hi] on float32 torch.linspace), re-typed below = `guo` membership;
  - netcal-style `histogram` membership: numpy searchsorted on float64 np.linspace, last bin closed
    (an independent numpy implementation of metrics.md §3.1, not netcal itself, which is not installed);
  - torch-uncertainty `_equal_binning_bucketize` re-typed below, with a *stable* sort so tied confidences
    have a defined order (TU's torch.sort is unstable);
  - classwise ECE: independent numpy implementation of metrics.md §3.3 with torchmetrics bins;
  - sklearn 1.1.3 log_loss, mean_squared_error (Brier/K), roc_auc_score, average_precision_score,
    precision_recall_curve + auc, roc_curve; ood_metrics.fpr_at_95_tpr and OpenOOD's fpr_recall re-typed;
  - torch.optim.LBFGS for the seed-compatible temperature scaling; sklearn IsotonicRegression.
"""
import json
import sys

import numpy as np

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."


def path(name):
    return f"{HERE}/{name}"


def f(x):
    return float(x)


def stage_torch():
    import torch
    import torchmetrics
    from torchmetrics.functional.classification import multiclass_calibration_error

    assert torchmetrics.__version__ == "1.1.2", torchmetrics.__version__
    g = torch.Generator().manual_seed(20240711)
    out = {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__}

    # --- fixtures -------------------------------------------------------------------------------------
    # k10: float32 logits; every 4th row scaled up so that float32 softmax saturates to exactly 1.0.
    n, k = 3000, 10
    logits = torch.randn(n, k, generator=g) * 2.0
    logits[::4] *= 12.0
    logits = logits.float()
    pred = logits.argmax(1)
    flip = torch.rand(n, generator=g) < 0.25
    labels = torch.where(flip, torch.randint(0, k, (n,), generator=g), pred)
    probs = torch.softmax(logits, dim=1)  # float32, as the seed computes them
    np.save(path("k10_logits.npy"), logits.numpy())
    np.save(path("k10_labels.npy"), labels.numpy().astype(np.int64))
    np.save(path("k10_probs.npy"), probs.numpy())
    out["k10_num_conf_exactly_one"] = int((probs.max(1).values == 1.0).sum())

    # k100: float64 probabilities from logits rounded to 0.5 (many tied confidences), int32 labels.
    n2, k2 = 500, 100
    logits2 = torch.round(torch.randn(n2, k2, generator=g, dtype=torch.float64) * 6.0) / 2.0
    labels2 = torch.where(torch.rand(n2, generator=g) < 0.5, logits2.argmax(1), torch.randint(0, k2, (n2,), generator=g))
    probs2 = torch.softmax(logits2, dim=1)
    np.save(path("k100_probs.npy"), probs2.numpy())
    np.save(path("k100_labels.npy"), labels2.numpy().astype(np.int32))

    # edges: K=2 float32 probabilities whose confidence sits exactly on float32 bin edges (and at 1.0).
    n3 = 400
    edge_vals = torch.cat([torch.linspace(0, 1, 11)[5:], torch.linspace(0, 1, 16)[8:]]).float()
    conf3 = edge_vals[torch.randint(0, len(edge_vals), (n3,), generator=g)]
    top = torch.randint(0, 2, (n3,), generator=g)
    probs3 = torch.stack([torch.where(top == 0, conf3, 1 - conf3), torch.where(top == 0, 1 - conf3, conf3)], 1).float()
    labels3 = torch.where(torch.rand(n3, generator=g) < 0.7, probs3.argmax(1), 1 - probs3.argmax(1))
    np.save(path("edges_probs.npy"), probs3.numpy())
    np.save(path("edges_labels.npy"), labels3.numpy().astype(np.uint8))

    # ood: float32 logits of an OOD set (flatter predictions).
    ood_logits = (torch.randn(2000, k, generator=g) * 1.5).float()
    np.save(path("ood_logits.npy"), ood_logits.numpy())
    np.save(path("ood_probs.npy"), torch.softmax(ood_logits, 1).numpy())

    # --- calibration errors --------------------------------------------------------------------------
    def guo(probs, labels, m):
        # gpleiss temperature_scaling _ECELoss (float32 linspace, in_bin = conf > lower & conf <= upper).
        conf, pred = probs.max(1)
        acc = pred.eq(labels)
        b = torch.linspace(0, 1, m + 1)
        ece = torch.zeros(1, dtype=torch.float64)
        mce = 0.0
        for lo, hi in zip(b[:-1], b[1:]):
            in_bin = conf.gt(lo.item()) * conf.le(hi.item())
            prop = in_bin.double().mean()
            if prop.item() > 0:
                gap = (acc[in_bin].double().mean() - conf[in_bin].double().mean()).abs()
                ece += gap * prop
                mce = max(mce, gap.item())
        return ece.item(), mce

    def hist(probs, labels, m):
        conf, pred = probs.max(1)
        conf = conf.double().numpy()
        acc = (pred == labels).numpy().astype(np.float64)
        e = np.linspace(0, 1, m + 1)
        idx = np.searchsorted(e, conf, side="right") - 1
        idx[idx == m] = m - 1
        ece, mce = 0.0, 0.0
        for b in range(m):
            sel = idx == b
            if sel.any():
                gap = abs(acc[sel].mean() - conf[sel].mean())
                ece += sel.mean() * gap
                mce = max(mce, gap)
        return ece, mce

    def ece_em(probs, labels, m):
        conf, pred = probs.max(1)
        acc = (pred == labels).to(conf.dtype)
        conf, order = torch.sort(conf, stable=True)
        acc = acc[order]
        ab, cb = acc.tensor_split(m), conf.tensor_split(m)
        tot = 0.0
        for a, c in zip(ab, cb):
            if len(c):
                tot += len(c) / len(conf) * abs(a.double().mean().item() - c.double().mean().item())
        return tot

    def classwise(probs, labels, m):
        p = probs.double().numpy() if probs.dtype == torch.float64 else probs.numpy()
        e = torch.linspace(0, 1, m + 1, dtype=probs.dtype).double().numpy()
        y = labels.numpy()
        n, k = p.shape
        tot = 0.0
        for c in range(k):
            pc = p[:, c].astype(np.float64)
            idx = np.searchsorted(e, pc, side="right") - 1  # [lo, hi) + extra bin for 1.0 (torchmetrics)
            hit = (y == c).astype(np.float64)
            for b in range(m + 1):
                sel = idx == b
                if sel.any():
                    tot += sel.sum() / n * abs(hit[sel].mean() - pc[sel].mean())
        return tot / k

    cases = {
        "k10": (probs, labels, k),
        "k100": (probs2, labels2, k2),
        "edges": (probs3, labels3, 2),
    }
    cal = {}
    for name, (p, y, kk) in cases.items():
        entry = {}
        for m in (10, 15):
            entry[f"tm_ece_{m}"] = f(multiclass_calibration_error(p, y, num_classes=kk, n_bins=m, norm="l1"))
            entry[f"tm_mce_{m}"] = f(multiclass_calibration_error(p, y, num_classes=kk, n_bins=m, norm="max"))
            entry[f"tm_rmsce_{m}"] = f(multiclass_calibration_error(p, y, num_classes=kk, n_bins=m, norm="l2"))
            entry[f"guo_ece_{m}"], entry[f"guo_mce_{m}"] = guo(p, y, m)
            entry[f"hist_ece_{m}"], entry[f"hist_mce_{m}"] = hist(p, y, m)
            entry[f"ece_em_{m}"] = ece_em(p, y, m)
            entry[f"classwise_ece_{m}"] = classwise(p, y, m)
        entry["accuracy"] = f((p.argmax(1) == y).double().mean())
        cal[name] = entry
    out["calibration"] = cal

    # Exact NLL from logits (float64 cross-entropy on the widened float32 logits) and one MC-sample check.
    out["k10_nll_exact_from_logits"] = f(torch.nn.functional.cross_entropy(logits.double(), labels))
    out["ood_energy_first5"] = [f(v) for v in torch.logsumexp(ood_logits.double(), 1)[:5]]

    # torch.linspace float32 edges for several M (checks our re-implementation of the kernel).
    out["linspace_f32"] = {str(m): [float(v) for v in torch.linspace(0, 1, m + 1)] for m in range(1, 201)}
    out["linspace_f64"] = {str(m): [float(v) for v in torch.linspace(0, 1, m + 1, dtype=torch.float64)] for m in (3, 10, 15, 20, 100)}

    # Docstring examples: torchmetrics MulticlassCalibrationError (n_bins=3): 0.2000 / 0.2333 / 0.2082.
    dp = torch.tensor([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
    dt = torch.tensor([0, 1, 2, 0])
    out["docstring_tm"] = {norm: f(multiclass_calibration_error(dp, dt, num_classes=3, n_bins=3, norm=norm)) for norm in ("l1", "max", "l2")}

    # --- temperature scaling (decal-calib): seed-compatible LBFGS on the validation half of k10 ---------
    val_logits, val_labels = logits[:1500], labels[:1500]
    lbfgs = {}
    for dtype in (torch.float32, torch.float64):
        t = torch.nn.Parameter(torch.ones(1, dtype=dtype) * 1.5)
        opt = torch.optim.LBFGS([t], lr=0.01, max_iter=50)
        z = val_logits.to(dtype)
        crit = torch.nn.CrossEntropyLoss()

        def closure():
            opt.zero_grad()
            loss = crit(z / t, val_labels)
            loss.backward()
            return loss

        opt.step(closure)
        state = opt.state[opt._params[0]]
        lbfgs[str(dtype).replace("torch.", "")] = {
            "temperature": f(t.detach()[0]),
            "func_evals": int(state["func_evals"]),
            "n_iter": int(state["n_iter"]),
            "nll_after": f(crit(z / t.detach(), val_labels)),
        }
    out["lbfgs_seed"] = lbfgs
    # The exact optimum in float64: bisection on dL/dbeta (beta = 1/T; L is convex in beta), torch autograd.
    z = val_logits.double()

    def dloss(b):
        beta = torch.tensor(b, dtype=torch.float64, requires_grad=True)
        (g1,) = torch.autograd.grad(torch.nn.functional.cross_entropy(z * beta, val_labels), beta)
        return g1.item()

    lo, hi = 1e-4, 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if dloss(mid) > 0:
            hi = mid
        else:
            lo = mid
    beta = 0.5 * (lo + hi)
    out["temperature_exact"] = {"temperature": 1.0 / beta,
                                "nll_after": f(torch.nn.functional.cross_entropy(z * beta, val_labels)),
                                "nll_before": f(torch.nn.functional.cross_entropy(z, val_labels))}

    with open(path("golden_torch.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


def stage_sklearn():
    import sklearn
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import (auc, average_precision_score, log_loss, mean_squared_error,
                                 precision_recall_curve, roc_auc_score, roc_curve)

    assert sklearn.__version__ == "1.1.3", sklearn.__version__
    out = {"sklearn": sklearn.__version__, "numpy": np.__version__}

    def onehot(y, k):
        o = np.zeros((len(y), k))
        o[np.arange(len(y)), y] = 1.0
        return o

    scores = {}
    for name, pf, lf in [("k10", "k10_probs.npy", "k10_labels.npy"), ("k100", "k100_probs.npy", "k100_labels.npy"), ("edges", "edges_probs.npy", "edges_labels.npy")]:
        p = np.load(path(pf)).astype(np.float64)  # exact widening of float32 probabilities
        y = np.load(path(lf)).astype(np.int64)
        k = p.shape[1]
        mse = mean_squared_error(onehot(y, k), p)
        scores[name] = {
            "nll_sklearn": float(log_loss(y, p, labels=np.arange(k))),
            # None (JSON null) when some p_y == 0 makes the exact NLL infinite.
            "nll_exact": (lambda v: v if np.isfinite(v) else None)(float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 0.0) + 0.0)))),
            "brier_div_k": float(mse),
            "brier": float(mse * k),
        }
    out["scores"] = scores
    out["docstring"] = {
        "tu_brier_1": float(mean_squared_error(onehot(np.array([0, 1]), 2), np.array([[0.8, 0.2], [0.3, 0.7]])) * 2),
        "tu_brier_2": float(mean_squared_error(onehot(np.array([0, 2]), 3), np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])) * 3),
        "tu_nll": float(-np.mean(np.log([0.7, 0.6]))),
    }

    # --- OOD ----------------------------------------------------------------------------------------------
    def ood_metrics_fpr95(preds, labels):
        # ood_metrics.fpr_at_95_tpr, verbatim logic.
        fpr, tpr, _ = roc_curve(labels, preds, pos_label=1)
        if all(tpr < 0.95):
            return 0.0
        elif all(tpr >= 0.95):
            return float(min(fpr[i] for i, x in enumerate(tpr) if x >= 0.95))
        return float(np.interp(0.95, tpr, fpr))

    def openood_fpr95(id_s, ood_s):
        conf = np.concatenate([id_s, ood_s])
        ood_indicator = np.concatenate([np.zeros(len(id_s)), np.ones(len(ood_s))])
        fpr_list, tpr_list, _ = roc_curve(ood_indicator, -conf)
        return float(fpr_list[np.argmax(tpr_list >= 0.95)])

    def exact_fpr95(id_s, ood_s):
        s = np.sort(id_s)[::-1]
        kk = int(np.ceil(0.95 * len(s) - 1e-9))
        tau = s[kk - 1]
        return float(np.mean(ood_s >= tau))

    def all_ood(id_s, ood_s):
        y = np.concatenate([np.ones(len(id_s)), np.zeros(len(ood_s))])
        s = np.concatenate([id_s, ood_s])
        pi, ri, _ = precision_recall_curve(y, s)
        po, ro, _ = precision_recall_curve(1 - y, -s)
        return {
            "auroc": float(roc_auc_score(y, s)),
            "auroc_ood_metrics": float(auc(*roc_curve(y, s)[:2])),
            "aupr_in_ap": float(average_precision_score(y, s)),
            "aupr_out_ap": float(average_precision_score(1 - y, -s)),
            "aupr_in_trapz": float(auc(ri, pi)),
            "aupr_out_trapz": float(auc(ro, po)),
            "fpr95_idpos_interp": ood_metrics_fpr95(s, y),
            "fpr95_oodpos": openood_fpr95(id_s, ood_s),
            "fpr95_idpos": exact_fpr95(id_s, ood_s),
        }

    id_msp = np.load(path("k10_probs.npy")).max(1).astype(np.float64)
    ood_msp = np.load(path("ood_probs.npy")).max(1).astype(np.float64)
    out["ood_msp"] = all_ood(id_msp, ood_msp)
    # Heavy ties: scores on a 0.05 grid.
    rng = np.random.default_rng(7)
    id_t = np.round(rng.beta(5, 2, 700) / 0.05) * 0.05
    ood_t = np.round(rng.beta(2, 3, 400) / 0.05) * 0.05
    np.save(path("ties_id_scores.npy"), id_t)
    np.save(path("ties_ood_scores.npy"), ood_t)
    out["ood_ties"] = all_ood(id_t, ood_t)

    # --- isotonic regression one-vs-rest (decal-calib) -------------------------------------------------
    p = np.load(path("k10_probs.npy")).astype(np.float64)
    y = np.load(path("k10_labels.npy"))
    val_p, val_y, test_p = p[:1500], y[:1500], p[1500:1520]
    cal = np.zeros_like(test_p)
    for c in range(p.shape[1]):
        ir = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        ir.fit(val_p[:, c], (val_y == c).astype(np.float64))
        cal[:, c] = ir.predict(test_p[:, c])
    out["isotonic_raw_first20"] = cal.tolist()

    with open(path("golden_sklearn.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    {"torch": stage_torch, "sklearn": stage_sklearn}[sys.argv[1]]()
