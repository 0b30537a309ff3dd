"""Small seed inputs for the checkpoint fuzzer (crates/decal-models/examples/fuzz_checkpoint.rs).

    python3 fuzz/seeds/make_checkpoint_seeds.py      (needs torch; run once, the files are committed)

torch_zip/: torch.save archives: a plain state dict of float32 / float64 / float16 / bfloat16 / int64 tensors,
a view with an offset and strides into a shared storage, and a Lightning-style {"state_dict": ...} dict.
torch_pickle/: the data.pkl of state_dict.pt and lightning.ckpt (unzip -p).
safetensors/: the same tensors in the safetensors layout (8-byte header length, JSON header, raw data),
written by hand so that no extra package is needed.
"""
import json, os, struct
import torch

here = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)
base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
sd = {
    "conv.weight": torch.randn(2, 1, 3, 3),
    "fc.bias": torch.randn(3, dtype=torch.float64),
    "half": torch.randn(4, dtype=torch.float16),
    "bf": torch.randn(2, 2, dtype=torch.bfloat16),
    "bn.num_batches_tracked": torch.tensor(5),
    "view": base[1:, ::2],  # offset 4, strides (4, 2) into a 12-element storage
}
torch.save(sd, os.path.join(here, "torch_zip", "state_dict.pt"))
torch.save({"state_dict": {"model." + k: v for k, v in sd.items()}, "epoch": 3},
           os.path.join(here, "torch_zip", "lightning.ckpt"))
torch.save({"w": torch.zeros(0)}, os.path.join(here, "torch_zip", "empty_tensor.pt"))

dtypes = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64"}
header, blobs, offset = {}, [], 0
for name, t in sd.items():
    t = t.contiguous().reshape(-1) if t.dim() == 0 else t.contiguous()
    shape = list(sd[name].shape)
    raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    header[name] = {"dtype": dtypes[t.dtype], "shape": shape, "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
import zipfile
for src, dst in [("state_dict.pt", "state_dict.pkl"), ("lightning.ckpt", "lightning.pkl")]:
    with zipfile.ZipFile(os.path.join(here, "torch_zip", src)) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        open(os.path.join(here, "torch_pickle", dst), "wb").write(z.read(pkl))
with open(os.path.join(here, "safetensors", "state_dict.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
