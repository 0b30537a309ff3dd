"""The other extraction levers of issue #9 item 3, measured on the reference engine (PyTorch 2.11, the same
libtorch decal links): WRN-16-4 body inference (eval mode, no gradients) in images/s for batch sizes 128,
512 and 1024, float32 and bf16 autocast, contiguous (NCHW) and channels-last memory layouts.

    python bench/reference/extraction_levers.py [threads] [images]     (defaults: 2, 2048)

Random normalised inputs and weights (the cost does not depend on them). Each cell: one warm-up batch,
then `images` images timed. Prints one JSON line per cell and a Markdown table.
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from train_speed import WRN  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
images = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
torch.set_num_threads(threads)
torch.manual_seed(0)
rows = []
for layout in ("contiguous", "channels_last"):
    model = WRN(16, 4).eval()
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    for precision in ("fp32", "bf16"):
        for batch in (128, 512, 1024):
            x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
            amp = dict(device_type="cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
            with torch.no_grad(), torch.autocast(**amp):
                model(x)
                start = time.perf_counter()
                done = 0
                while done < images:
                    model(x)
                    done += batch
                seconds = time.perf_counter() - start
            row = {"layout": layout, "precision": precision, "batch": batch, "threads": threads,
                   "img_per_s": done / seconds, "torch": torch.__version__}
            print(json.dumps(row), flush=True)
            rows.append(row)
base = next(r["img_per_s"] for r in rows if (r["layout"], r["precision"], r["batch"]) == ("contiguous", "fp32", 512))
print("\n| layout | precision | batch | img/s | ÷ contiguous fp32 batch 512 |\n|---|---|---|---|---|")
for r in rows:
    print(f"| {r['layout']} | {r['precision']} | {r['batch']} | {r['img_per_s']:.0f} | {r['img_per_s'] / base:.2f}× |")
