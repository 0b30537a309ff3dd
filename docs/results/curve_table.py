"""The per-epoch Markdown table of a `decal train` run, from its metrics.csv (standard library only).

    python3 docs/results/curve_table.py <run dir or metrics.csv>

Columns: epoch (1-based), the learning rate at the epoch's end, training loss and accuracy, validation NLL,
accuracy and ECE (as `decal train` reports it: 15 equal-width bins, (lo, hi] membership), training images/s.
The row of the best checkpoint (lowest validation NLL) is marked with *.
"""
import csv, os, sys

path = sys.argv[1]
if os.path.isdir(path):
    path = os.path.join(path, "metrics.csv")
rows = list(csv.DictReader(open(path)))
print("| epoch | lr (end) | train loss | train acc (%) | val NLL | val acc (%) | val ECE (%) | img/s |")
print("|---|---|---|---|---|---|---|---|")
# The last row that was a new best is the best checkpoint.
best_row = max((r for r in rows if r["is_best"] == "true"), key=lambda r: int(r["epoch"]), default=None)
for r in rows:
    best = " *" if r is best_row else ""
    print(f'| {int(r["epoch"]) + 1}{best} | {float(r["lr"]):.4f} | {float(r["train_loss"]):.4f} | '
          f'{100 * float(r["train_accuracy"]):.2f} | {float(r["val_nll"]):.4f} | '
          f'{100 * float(r["val_accuracy"]):.2f} | {100 * float(r["val_ece"]):.2f} | '
          f'{float(r["train_images_per_sec"]):.0f} |')
