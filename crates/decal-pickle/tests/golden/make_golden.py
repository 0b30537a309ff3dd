"""Writes the pickle fixtures the decal-pickle tests read. Run with the torch venv:
~/.cache/decal/torch-2.11.0/bin/python make_golden.py
Each file is produced by CPython's own pickle (or torch.save), never by decal."""
import collections, io, pickle, zipfile
import numpy as np
import torch

shared = [1, 2]
obj = {
    "none": None, "true": True, "false": False,
    "small": 7, "neg": -300, "i32": 2**31 - 1, "big": 2**70, "negbig": -(2**65) - 3,
    "float": 0.1, "str": "héllo ✓", "bytes": b"\x00\xff ab",
    "list": [1, "a", 2.5], "tuple": (1, (2, 3)), "empty": (), "nested": {"k": [{"x": 1}]},
    "set": {3}, "frozen": frozenset([4]),
    "shared_a": shared, "shared_b": shared,
    "od": collections.OrderedDict([("z", 1), ("a", 2)]),
}
for proto in range(0, 6):
    with open(f"obj_p{proto}.pkl", "wb") as f:
        pickle.dump(obj, f, protocol=proto)

arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
with open("numpy_u8_p2.pkl", "wb") as f:
    pickle.dump({"data": arr, "labels": [1, 2]}, f, protocol=2)
with open("numpy_f4_fortran_p4.pkl", "wb") as f:
    pickle.dump(np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)), f, protocol=4)

torch.manual_seed(0)
sd = collections.OrderedDict([("conv.weight", torch.randn(2, 1, 3, 3)), ("conv.bias", torch.zeros(2)),
                              ("bn.num_batches_tracked", torch.tensor(5))])
torch.save({"state_dict": sd, "epoch": 3}, "torch_small.pt")
