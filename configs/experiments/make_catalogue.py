#!/usr/bin/env python3
"""Writes the seed's experiment catalogue (seed-system.md §11) as decal experiment files.

    python3 configs/experiments/make_catalogue.py

GPU-scale files go to configs/experiments/*.toml (the seed's schedule: 600-epoch bases, 40-epoch heads,
seeds 0..9); a small CPU variant of each goes to configs/experiments/cpu/*.toml (same structure, a few
thousand images, a few epochs: a smoke test of the pipeline in minutes, not a replication).

Every file names its recipe (crates/decal-eval/src/recipe.rs): `recipe = "decal"` runs the seed's schedule
with decal's fixes of the seed's documented bugs (selection on validation NLL, reshuffling, un-augmented
validation, a frozen body in eval mode, ± = sample std); `recipe = "seed"` switches every one of them back
to the seed's behaviour (keys written in a file still win over the preset). The GPU-scale files run
"decal"; the CPU variant of wrn28-10-cifar10 runs "seed", so the catalogue smoke test covers both.
Data paths assume the usual layout under data/ (relative to the repository root); edit them to your copies.
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The seed's 13-corruption CIFAR-10-C list (§4.5); listing it reproduces the paper's SHIFT aggregate.
C10_13 = ["brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost", "glass_blur",
          "impulse_noise", "jpeg_compression", "motion_blur", "pixelate", "shot_noise", "snow"]
C100_18 = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
           "zoom_blur", "snow", "frost", "brightness", "contrast", "elastic_transform", "pixelate",
           "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate"]


def head(name, kind, z=128, m=None, mlp=3, loss=None, samples=1):
    lines = ["[[heads]]", f'name = "{name}"', f'kind = "{kind}"']
    if kind != "reinit":
        lines.append(f"latent_dim = {z}")
    if mlp != 3:
        lines.append(f"mlp_size = {mlp}")
    if samples != 1:
        lines.append(f"train_samples = {samples}")
    if loss:
        lines.append(f"loss = {loss}")
    if kind == "vtst":
        lines.append(f"eval_samples = [{m}]")
    return "\n".join(lines)


FL = '{ kind = "fl", gamma = 3.0 }'
FLA = '{ kind = "fla", gammas = [5.0, 3.0], probs = [0.2, 1.0] }'

# name: (title, dataset, model, stage-1 loss, heads)
CATALOGUE = {
    "wrn28-10-cifar10": ("WRN-28-10 on CIFAR-10: baseline, TS, TST Z128, V-TST Z32 m=1, V-TST Z128 m=10, REINIT (§11 rows 1-5)",
                         "cifar10", "wrn-28-10", None,
                         [head("TST", "tst"), head("V-TST Z32", "vtst", 32, 1), head("V-TST Z128", "vtst", 128, 10), head("REINIT", "reinit")]),
    "wrn28-10-cifar100": ("WRN-28-10 on CIFAR-100: baseline, TS, TST Z512, V-TST Z128 m=1, V-TST Z512 m=10",
                          "cifar100", "wrn-28-10", None,
                          [head("TST", "tst", 512), head("V-TST Z128", "vtst", 128, 1), head("V-TST Z512", "vtst", 512, 10)]),
    "resnet50-cifar10": ("ResNet-50 (CIFAR stem) on CIFAR-10: baseline, TS, TST Z128, V-TST Z32 m=1, V-TST Z128 m=10",
                         "cifar10", "resnet50", None,
                         [head("TST", "tst"), head("V-TST Z32", "vtst", 32, 1), head("V-TST Z128", "vtst", 128, 10)]),
    "efficientnet-cifar10": ("The seed's EfficientNet-'B5' on CIFAR-10: baseline, TS, TST Z128, V-TST Z32 m=1, V-TST Z128 m=10",
                             "cifar10", "efficientnet-b5-seed", None,
                             [head("TST", "tst"), head("V-TST Z32", "vtst", 32, 1), head("V-TST Z128", "vtst", 128, 10)]),
    "cnn-cifar10": ("The seed's CNN on CIFAR-10: baseline, TS, TST Z128, V-TST Z128 with m=1 and m=10 (same models)",
                    "cifar10", "cnn", None,
                    [head("TST", "tst"), head("V-TST", "vtst", 128, "1, 10")]),
    "ablation-head-size": ("Head-size ablation on WRN-28-10 / CIFAR-10: TST MLP4 Z128 and Z10, V-TST MLP4 Z32 (m=1) and Z128 (m=10)",
                           "cifar10", "wrn-28-10", None,
                           [head("TST MLP4 Z128", "tst", 128, mlp=4), head("TST MLP4 Z10", "tst", 10, mlp=4),
                            head("V-TST MLP4 Z32", "vtst", 32, 1, mlp=4), head("V-TST MLP4 Z128", "vtst", 128, 10, mlp=4)]),
    "ablation-train-samples": ("Training-sample ablation on WRN-28-10 / CIFAR-10: V-TST with S=5 latent samples, Z32 (m=1) and Z128 (m=10)",
                               "cifar10", "wrn-28-10", None,
                               [head("V-TST N5 Z32", "vtst", 32, 1, samples=5), head("V-TST N5 Z128", "vtst", 128, 10, samples=5)]),
    "focal-fl": ("Focal loss (gamma 3) in stage 1 (FL-WRN): TST FL+FL, TST FL+CE, V-TST FL+FL Z32/Z128, V-TST FL+CE Z32/Z128",
                 "cifar10", "wrn-28-10", FL,
                 [head("TST FL+FL", "tst", loss=FL), head("TST FL+CE", "tst"),
                  head("V-TST FL+FL Z32", "vtst", 32, 1, loss=FL), head("V-TST FL+FL Z128", "vtst", 128, 10, loss=FL),
                  head("V-TST FL+CE Z32", "vtst", 32, 1), head("V-TST FL+CE Z128", "vtst", 128, 10)]),
    "focal-fla": ("Adaptive focal loss (FLSD-53) in stage 1 (FLA-WRN): TST FLA+FLA, TST FLA+CE, V-TST FLA+FLA Z128 (m=1, 10), V-TST FLA+CE Z32/Z128",
                  "cifar10", "wrn-28-10", FLA,
                  [head("TST FLA+FLA", "tst", loss=FLA), head("TST FLA+CE", "tst"),
                   head("V-TST FLA+FLA", "vtst", 128, "1, 10", loss=FLA),
                   head("V-TST FLA+CE Z32", "vtst", 32, 1), head("V-TST FLA+CE Z128", "vtst", 128, 10)]),
    "focal-ce-fl": ("Cross-entropy in stage 1, focal loss in stage 2 (CE+FL): TST CE+FL, V-TST CE+FL Z128 (m=1, 10)",
                    "cifar10", "wrn-28-10", None,
                    [head("TST CE+FL", "tst", loss=FL), head("V-TST CE+FL", "vtst", 128, "1, 10", loss=FL)]),
}


# CPU variants that run recipe = "seed" (a BatchNorm backbone, so the smoke test covers drifting bodies).
SEED_RECIPE_CPU = {"wrn28-10-cifar10"}


def render(name, title, dataset, model, loss, heads, cpu):
    data_dir = {"cifar10": "data/cifar10", "cifar100": "data/cifar100"}[dataset]
    ood = [("svhn", "svhn", "data/svhn", "test"),
           ("cifar100" if dataset == "cifar10" else "cifar10", "cifar100" if dataset == "cifar10" else "cifar10",
            "data/cifar100" if dataset == "cifar10" else "data/cifar10", "test")]
    shift_dir = "data/CIFAR-10-C" if dataset == "cifar10" else "data/CIFAR-100-C"
    corruptions = C10_13 if dataset == "cifar10" else C100_18
    out = []
    scale = "CPU smoke-test variant" if cpu else "GPU-scale (the seed's schedule; days on one GPU for the 600-epoch base)"
    recipe = "seed" if (cpu and name in SEED_RECIPE_CPU) else "decal"
    out.append(f"# {title}.\n# {scale}. Generated by configs/experiments/make_catalogue.py; seed-system.md §11.")
    if recipe == "seed":
        out.append("# recipe = \"seed\": the seed's behaviour wherever this file sets nothing (checkpoint selection Q-8, no reshuffling\n"
                   "# BUG-5, augmented stage-1 validation BUG-6, exact stage 2 with a drifting body BUG-7, paper metrics first,\n"
                   "# SE with ddof 0 BUG-20); see crates/decal-eval/src/recipe.rs.")
    else:
        out.append("# recipe = \"decal\": the seed's schedule with decal's fixes of the seed's documented bugs (seed-system.md §15);\n"
                   "# recipe = \"seed\" switches every one back (crates/decal-eval/src/recipe.rs). Not the seed's recipe.")
    if cpu:
        out.append("# A few thousand images and a few epochs: checks that the pipeline runs, numbers are not comparable to the seed's.")
        model = {"wrn-28-10": "wrn-16-4", "resnet50": "resnet18", "efficientnet-b5-seed": "efficientnet-b0"}.get(model, model)
    out.append("# Paths are relative to this file; they assume data/ at the repository root.")
    out.append(f'recipe = "{recipe}"')
    out.append(f'name = "{name}{"-cpu" if cpu else ""}"')
    out.append(f'description = "{title}{" (CPU variant)" if cpu else ""}"')
    out.append("seeds = [0, 1, 2]" if cpu else "seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")
    out.append("temperature_scaling = true\n")
    root = "../../.." if cpu else "../.."
    out.append("[data]")
    out.append(f'dataset = "{dataset}"')
    out.append(f'dir = "{root}/{data_dir}"')
    if cpu:
        out.append("limit_train = 4000\nlimit_val = 1000\nlimit_test = 2000")
    out.append("\n[backbone.train]")
    out.append(f'model = "{model}"')
    out.append(f"epochs = {3 if cpu else 600}")
    out.append("batch_size = 256")
    out.append(f"lr = {0.001 if cpu else 0.0001}")
    out.append("seed = 1")
    if loss:
        out.append(f"loss = {loss}")
    out.append("")
    for h in heads:
        text = h
        if cpu:
            text += "\nepochs = 5\nlr = 0.001"
        out.append(text + "\n")
    for (oname, ods, odir, split) in ood:
        out.append(f'[[ood]]\nname = "{oname}"\ndataset = "{ods}"\ndir = "{root}/{odir}"\nsplit = "{split}"')
        if cpu:
            out.append("limit = 2000")
        out.append("")
    out.append("[shift]")
    out.append(f'dir = "{root}/{shift_dir}"')
    if not cpu:
        out.append("# The seed's corruption list (paper aggregate); remove the line to evaluate every corruption found.")
        out.append("corruptions = [" + ", ".join(f'"{c}"' for c in corruptions) + "]")
        if dataset == "cifar100":
            out.append("# severity_divisor = 13  # reproduces the seed's CIFAR-100 per-severity bug (BUG-1)")
    out.append("\n[eval]")
    out.append('profiles = ["default", "paper"]')
    out.append(f"bootstrap = {200 if cpu else 1000}")
    return "\n".join(out) + "\n"


for name, (title, dataset, model, loss, heads) in CATALOGUE.items():
    (HERE / f"{name}.toml").write_text(render(name, title, dataset, model, loss, heads, cpu=False))
    (HERE / "cpu" / f"{name}.toml").write_text(render(name, title, dataset, model, loss, heads, cpu=True))
    print(name)
