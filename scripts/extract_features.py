#!/usr/bin/env python3
"""Extract features (and logits) from any PyTorch model, in the files `decal heads` reads.

Plain PyTorch: the `.npy` files are written by hand (format 1.0, little-endian, C order), so NumPy is not
needed; torchvision and Pillow are needed only for the paths that use them (a torchvision model; image folders).

Two ways to use it:

1. As a library, for any ``nn.Module`` and any named layer (a forward hook catches that layer's output,
   flattened to ``[N, F]``)::

       import torch, extract_features as xf
       model = torchvision.models.resnet18(weights="DEFAULT").eval()
       feats, logits, labels = xf.extract(model, "avgpool", loader)   # loader yields (images, labels)
       xf.save_npy("train_features.npy", feats); xf.save_npy("train_labels.npy", labels)

2. From the command line, on an image folder (``DIR/<class>/<image>``, classes in sorted order as
   torchvision's ``ImageFolder``; a folder of images without class folders is read unlabelled, e.g. an OOD
   set). The model is a torchvision model (``--torchvision resnet18 --weights DEFAULT``) or any Python
   callable returning an ``nn.Module`` (``--model path/to/file.py:function``)::

       python scripts/extract_features.py --model scripts/examples/seed_cnn.py:load \\
           --checkpoint ../shared/checkpoints/seed-cnn-cifar10-seed1.ckpt --layer act4 \\
           --images ../shared/datasets/cifar10-jpeg/train --split 0.8 --split-seed 1 \\
           --mean 0.4914 0.4822 0.4465 --std 0.247 0.243 0.261 --out runs/feats --name train,val

       python scripts/extract_features.py --torchvision resnet18 --weights DEFAULT --layer avgpool \\
           --images my_images/test --resize 224 --out runs/feats --name test

Per split NAME it writes ``NAME_features.npy`` (float32 ``[N, F]``), ``NAME_logits.npy`` (float32
``[N, K]``, the model's own output: the baseline ``decal heads --test-logits`` compares against) and, for
labelled folders, ``NAME_labels.npy`` (int64 ``[N]``). ``--split F --split-seed S`` divides a labelled folder
the way ``torch.utils.data.random_split`` with ``torch.Generator().manual_seed(S)`` does (the seed system's
train/validation split for F = 0.8, S = 1), written as two splits named by ``--name first,second``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
import sys

import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def save_npy(path: str, tensor: torch.Tensor) -> None:
    """Writes a tensor as ``.npy`` (format 1.0, little-endian, C order; float32, float64, int64 or uint8),
    atomically (temporary file, then rename). Written by hand, so NumPy is not needed."""
    t = tensor.detach().cpu().contiguous().clone()
    descr = {torch.float32: "<f4", torch.float64: "<f8", torch.int64: "<i8", torch.uint8: "|u1"}[t.dtype]
    if sys.byteorder != "little" and t.element_size() > 1:
        raise SystemExit("error: save_npy writes little-endian data and needs a little-endian machine")
    dims = ", ".join(str(d) for d in t.shape)
    shape = f"({dims},)" if t.dim() == 1 else f"({dims})"
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(bytes(t.untyped_storage()))
    os.replace(tmp, path)


def extract(model: torch.nn.Module, layer: str, batches, device: str = "cpu"):
    """Runs ``model`` (eval mode, no gradients) over ``batches`` of ``(images, labels)`` and returns
    ``(features [N, F] float32, logits [N, K] float32, labels [N] int64 or None)``; the features are the
    output of the submodule named ``layer`` (``dict(model.named_modules())`` names), flattened."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise SystemExit(f"error: --layer {layer!r}: no such submodule (have: {', '.join(k for k in modules if k)})")
    caught = []
    handle = modules[layer].register_forward_hook(lambda _m, _i, out: caught.append(out.detach().flatten(1).float().cpu()))
    model.eval().to(device)
    feats, logits, labels = [], [], []
    try:
        with torch.no_grad():
            for x, y in batches:
                caught.clear()
                out = model(x.to(device))
                if len(caught) != 1:
                    raise SystemExit(f"error: --layer {layer!r} ran {len(caught)} times in one forward pass (need exactly once)")
                feats.append(caught[0])
                logits.append(out.detach().float().cpu())
                if y is not None:
                    labels.append(y.long())
    finally:
        handle.remove()
    return torch.cat(feats), torch.cat(logits), (torch.cat(labels) if labels else None)


def list_images(root: str):
    """``(paths, labels or None, class names)``: class folders in sorted order (torchvision ``ImageFolder``),
    files sorted within each; a folder of images without class folders gives no labels."""
    entries = sorted(os.listdir(root))
    classes = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    if classes:
        paths, labels = [], []
        for c, name in enumerate(classes):
            files = sorted(f for f in os.listdir(os.path.join(root, name)) if f.lower().endswith(IMAGE_SUFFIXES))
            paths += [os.path.join(root, name, f) for f in files]
            labels += [c] * len(files)
        return paths, labels, classes
    paths = [os.path.join(root, f) for f in entries if f.lower().endswith(IMAGE_SUFFIXES)]
    return paths, None, []


def image_batches(paths, labels, mean, std, resize, batch_size):
    """Decodes images with Pillow (RGB), optionally resizes (bilinear, antialiased), converts like
    ``ToTensor`` + ``Normalize(mean, std)``; yields ``(images [B, 3, H, W], labels [B] or None)``."""
    from PIL import Image

    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    for start in range(0, len(paths), batch_size):
        xs = []
        for p in paths[start : start + batch_size]:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if resize and im.size != (resize, resize):
                    im = im.resize((resize, resize), Image.BILINEAR)
                h, w = im.size[1], im.size[0]
                x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(h, w, 3)
            xs.append((x.permute(2, 0, 1).float() / 255.0 - mean_t) / std_t)
        y = None if labels is None else torch.tensor(labels[start : start + batch_size])
        yield torch.stack(xs), y


def load_model(args) -> torch.nn.Module:
    if args.torchvision:
        import torchvision  # only this path needs torchvision

        return torchvision.models.get_model(args.torchvision, weights=args.weights)
    file, _, func = args.model.rpartition(":")
    spec = importlib.util.spec_from_file_location("user_model", file)
    if spec is None or not func:
        raise SystemExit(f"error: --model {args.model!r}: expected path/to/file.py:function")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, func)
    return factory(args.checkpoint) if args.checkpoint else factory()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="path/to/file.py:function returning an nn.Module (called with --checkpoint if given)")
    src.add_argument("--torchvision", help="a torchvision model name, e.g. resnet18 (needs torchvision)")
    p.add_argument("--weights", default=None, help="torchvision weights, e.g. DEFAULT")
    p.add_argument("--checkpoint", default=None, help="passed to the --model function")
    p.add_argument("--layer", required=True, help="submodule whose output is the feature vector (e.g. avgpool)")
    p.add_argument("--images", required=True, help="image folder: DIR/<class>/<image> (labelled) or DIR/<image> (unlabelled)")
    p.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406])
    p.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225])
    p.add_argument("--resize", type=int, default=0, help="resize to SxS first (0 = keep)")
    p.add_argument("--limit", type=int, default=0, help="use N images evenly spaced over the folder (0 = all)")
    p.add_argument("--split", type=float, default=None, help="train fraction of a random_split into two named splits")
    p.add_argument("--split-seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", required=True, help="split name (two comma-separated names with --split)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.name.split(",")
    if (args.split is None) != (len(names) == 1):
        raise SystemExit("error: --split needs two names (--name train,val); without --split give one")
    paths, labels, classes = list_images(args.images)
    if not paths:
        raise SystemExit(f"error: --images {args.images}: no images found")
    if args.limit and args.limit < len(paths):
        keep = [i * len(paths) // args.limit for i in range(args.limit)]
        paths = [paths[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
    if args.split is not None:
        if labels is None:
            raise SystemExit("error: --split needs a labelled folder (DIR/<class>/<image>)")
        n_train = int(len(paths) * args.split)
        perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(args.split_seed)).tolist()
        parts = [(names[0], perm[:n_train]), (names[1], perm[n_train:])]
    else:
        parts = [(names[0], list(range(len(paths))))]
    model = load_model(args)
    os.makedirs(args.out, exist_ok=True)
    for name, idx in parts:
        sub_paths = [paths[i] for i in idx]
        sub_labels = None if labels is None else [labels[i] for i in idx]
        batches = image_batches(sub_paths, sub_labels, args.mean, args.std, args.resize, args.batch_size)
        feats, logits, y = extract(model, args.layer, batches, args.device)
        save_npy(os.path.join(args.out, f"{name}_features.npy"), feats)
        save_npy(os.path.join(args.out, f"{name}_logits.npy"), logits)
        if y is not None:
            save_npy(os.path.join(args.out, f"{name}_labels.npy"), y)
        print(f"{name}: {feats.shape[0]} images, features {tuple(feats.shape)}, logits {tuple(logits.shape)}"
              + ("" if y is None else f", accuracy of the model's logits {(logits.argmax(1) == y).float().mean():.4f}"))
    with open(os.path.join(args.out, "extract.json"), "w") as f:
        json.dump({"argv": sys.argv, "classes": classes, "splits": [n for n, _ in parts], "torch": torch.__version__}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
