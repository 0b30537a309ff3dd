"""A calibrated classification head trained by decal (TST, V-TST or REINIT), as a plain PyTorch module.

Self-contained: needs only ``torch`` (no decal, no ``safetensors`` package). Usage::

    import torch
    from model import load

    head = load("seed-0/model.safetensors")       # torch.nn.Module, eval mode
    logits = head(features)                       # [N, K] from features [N, F] (V-TST: the mean latent μ)
    probs = head.predict_proba(features)          # [N, K], with the fitted temperature if there is one
    probs = head.predict_proba(features, num_samples=10, seed=0)   # V-TST: mean of 10 sampled softmaxes

Architectures (decal-models/src/heads, seed-system.md §6); every ``Linear`` is ``weight @ x + bias``:

- TST: ``encoder`` = Linear layers F → 3Z → Z (``mlp_size`` 4: F → 6Z → 3Z → Z, 5: F → 9Z → 6Z → 3Z → Z)
  with ReLU between layers and none after the last, then ``decoder`` = Linear(Z → K).
- V-TST: ``mean`` and ``logvar``, two encoders of that shape; ``logvar`` is followed by ``logsigmoid`` (so
  σ² = exp(logvar) ∈ (0, 1]); ``z = μ + exp(logvar / 2) · ε`` with ε ~ N(0, I); logits = ``decoder(z)``.
  The predictive distribution with m samples is the mean of the m softmaxes (not the softmax of the mean).
  ``forward`` decodes μ (decal's "V-TST mean" row).
- REINIT: ``linear`` = Linear(F → K).

Temperatures: ``head.temperatures`` maps a prediction rule to the T decal fitted on the validation split
(``"logits"`` for TST / REINIT; ``"m=<m>"`` and ``"mean"`` for V-TST); T divides the logits (for V-TST every
sample's logits) before the softmax. ``head.temperature`` is the TST / REINIT one (None if not fitted).
decal draws its V-TST ε from its own generator; ``predict_proba`` uses a seeded ``torch.Generator``, so
sampled probabilities agree with decal's in distribution, not draw for draw (the mean latent agrees exactly).
"""

import json
import struct

import torch
from torch import nn
import torch.nn.functional as F

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """``(tensors, metadata)`` of a safetensors file: a dict of name → tensor and the string metadata."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        buf = bytearray(data[8 + n + start : 8 + n + end])
        dtype = _DTYPES[info["dtype"]]
        flat = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors, metadata


def _encoder(widths):
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))


def _run(layers, x):
    x = layers[0](x)
    for layer in layers[1:]:
        x = layer(F.relu(x))
    return x


def _widths(feature_dim, latent_dim, mlp_size):
    hidden = {4: [6, 3], 5: [9, 6, 3]}.get(mlp_size, [3])
    return [feature_dim] + [h * latent_dim for h in hidden] + [latent_dim]


class Head(nn.Module):
    """A decal head; see the module docstring."""

    def __init__(self, kind, feature_dim, latent_dim, num_classes, mlp_size=3, temperatures=None):
        super().__init__()
        self.kind = kind
        self.temperatures = dict(temperatures or {})
        self.temperature = self.temperatures.get("logits")
        if kind == "reinit":
            self.linear = nn.Linear(feature_dim, num_classes)
            return
        widths = _widths(feature_dim, latent_dim, mlp_size)
        if kind == "tst":
            self.encoder = _encoder(widths)
        elif kind == "vtst":
            self.mean = _encoder(widths)
            self.logvar = _encoder(widths)
        else:
            raise ValueError(f"unknown head kind {kind!r} (tst, vtst or reinit)")
        self.decoder = nn.Linear(latent_dim, num_classes)

    def forward(self, features):
        """Logits ``[N, K]`` (untempered). V-TST: the decoder applied to the mean latent μ."""
        if self.kind == "reinit":
            return self.linear(features)
        if self.kind == "tst":
            return self.decoder(_run(self.encoder, features))
        return self.decoder(_run(self.mean, features))

    def encode(self, features):
        """V-TST: ``(μ, logvar)``, each ``[N, Z]``, with ``logvar = logsigmoid(·) ≤ 0``."""
        return _run(self.mean, features), F.logsigmoid(_run(self.logvar, features))

    def sample_logits(self, features, num_samples, generator=None):
        """V-TST: logits ``[m, N, K]`` of ``num_samples`` latent draws per example."""
        mu, logvar = self.encode(features)
        eps = torch.randn((num_samples,) + tuple(mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        return self.decoder(mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * eps)

    @torch.no_grad()
    def predict_proba(self, features, num_samples=10, seed=None, temperature=None):
        """Predictive probabilities ``[N, K]``.

        TST / REINIT: ``softmax(logits / T)``. V-TST: ``(1/m) Σ_s softmax(decoder(z_s) / T)`` with
        ``m = num_samples`` (``num_samples = 0`` decodes μ); ``seed`` seeds the draws (a ``torch.Generator``
        on the features' device). ``temperature``: None = the fitted T of this rule when decal fitted one,
        else 1; a number = that T.
        """
        if temperature is None:
            rule = "logits" if self.kind != "vtst" else ("mean" if num_samples == 0 else f"m={num_samples}")
            temperature = self.temperatures.get(rule, 1.0)
        if self.kind != "vtst" or num_samples == 0:
            return torch.softmax(self.forward(features) / temperature, dim=-1)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=features.device)
            generator.manual_seed(seed)
        logits = self.sample_logits(features, num_samples, generator)
        return torch.softmax(logits / temperature, dim=-1).mean(0)


def load(path, device="cpu"):
    """The head stored in ``path`` (an exported ``model.safetensors``), in eval mode."""
    tensors, meta = read_safetensors(path)
    if not meta.get("format", "").startswith("decal-head/"):
        raise ValueError(f"{path}: not a decal head export (metadata format {meta.get('format')!r})")
    head = Head(
        meta["kind"],
        int(meta["feature_dim"]),
        int(meta["latent_dim"]),
        int(meta["num_classes"]),
        int(meta["mlp_size"]),
        json.loads(meta.get("temperatures", "{}")),
    )
    head.load_state_dict(tensors, strict=True)
    head.metadata = meta
    return head.to(device).eval()
