"""Writes the fixtures and golden values of the decal-data tests, using the reference implementations
(CPython pickle, NumPy, SciPy's savemat, Pillow, PyTorch 2.11). Run from this folder:

    /tmp/venv-C/bin/python make_golden.py          # pillow + numpy + scipy (fixtures, Pillow values)
    ~/.cache/decal/torch-2.11.0/bin/python make_golden.py --torch   # torch values (randperm, interpolate)

The 20 CIFAR-10 and 20 CIFAR-100 sample PNGs of shared/datasets/samples (exact original test pixels) are
written into every official layout so that the Rust readers can be checked against the PNG pixels.
"""
import gzip, hashlib, json, os, pickle, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "../../../../../shared/datasets/samples")
FIX = os.path.join(HERE, "fixtures")


def samples(prefix):
    from PIL import Image
    names = sorted(f for f in os.listdir(SAMPLES) if f.startswith(prefix + "_"))
    imgs = np.stack([np.asarray(Image.open(os.path.join(SAMPLES, n)).convert("RGB")) for n in names])
    labels = [int(n.rsplit("_", 1)[1].split(".")[0]) for n in names]
    return imgs, labels


def pillow_part():
    from PIL import Image
    import scipy.io
    os.makedirs(FIX, exist_ok=True)
    c10, l10 = samples("cifar10")
    c100, l100 = samples("cifar100")
    assert c10.shape == (20, 32, 32, 3) and c100.shape == (20, 32, 32, 3)
    np.save(os.path.join(FIX, "cifar10_samples_hwc.npy"), c10)
    np.save(os.path.join(FIX, "cifar100_samples_hwc.npy"), c100)
    chw10 = c10.transpose(0, 3, 1, 2).reshape(20, 3072)
    chw100 = c100.transpose(0, 3, 1, 2).reshape(20, 3072)
    # CIFAR-10 binary: label byte + 3072 planar bytes.
    with open(os.path.join(FIX, "cifar10_20.bin"), "wb") as f:
        for i in range(20):
            f.write(bytes([l10[i]]) + chw10[i].tobytes())
    # CIFAR-100 binary: coarse, fine, pixels. Coarse labels are not in the sample names: use fine // 5
    # (a valid 0..19 value; the reader's coarse mapping is not what is tested here).
    with open(os.path.join(FIX, "cifar100_20.bin"), "wb") as f:
        for i in range(20):
            f.write(bytes([l100[i] // 5, l100[i]]) + chw100[i].tobytes())
    # Python version: protocol-2 pickles like the official (Python 2 era) files.
    with open(os.path.join(FIX, "cifar10_20.pkl"), "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": l10, "data": chw10,
                     "filenames": [f"img_{i}.png" for i in range(20)]}, f, protocol=2)
    with open(os.path.join(FIX, "cifar100_20.pkl"), "wb") as f:
        pickle.dump({"filenames": [f"img_{i}.png" for i in range(20)], "batch_label": "testing batch 1 of 1",
                     "fine_labels": l100, "coarse_labels": [l // 5 for l in l100], "data": chw100}, f, protocol=2)
    # CIFAR-10-C layout: <corruption>.npy uint8 [5*20, 32, 32, 3] (severity blocks) + labels.npy.
    cdir = os.path.join(FIX, "CIFAR-10-C")
    os.makedirs(cdir, exist_ok=True)
    for k, corr in enumerate(["brightness", "fog"]):
        blocks = [np.clip(c10.astype(int) + 10 * s + k, 0, 255).astype(np.uint8) for s in range(5)]
        np.save(os.path.join(cdir, corr + ".npy"), np.concatenate(blocks))
    np.save(os.path.join(cdir, "labels.npy"), np.array(l10 * 5, dtype=np.int64))
    # SVHN format 2 via scipy.io.savemat: X [32, 32, 3, N] uint8, y [N, 1] with 10 meaning 0.
    X = np.ascontiguousarray(c10.transpose(1, 2, 3, 0))
    y = np.array([[l if l != 0 else 10] for l in l10], dtype=np.uint8)
    scipy.io.savemat(os.path.join(FIX, "svhn_20_plain.mat"), {"X": X, "y": y}, do_compression=False)
    scipy.io.savemat(os.path.join(FIX, "svhn_20_zlib.mat"), {"X": X, "y": y.astype(np.float64)},
                     do_compression=True)
    # IDX (MNIST layout) of the 20 CIFAR-10 samples' red channel, raw and gzipped.
    red = c10[:, :, :, 0]
    idx_img = bytes([0, 0, 8, 3]) + np.array([20, 32, 32], dtype=">u4").tobytes() + red.tobytes()
    idx_lab = bytes([0, 0, 8, 1]) + np.array([20], dtype=">u4").tobytes() + bytes(l10)
    open(os.path.join(FIX, "idx20-images-idx3-ubyte"), "wb").write(idx_img)
    with gzip.open(os.path.join(FIX, "idx20-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(idx_lab)
    # Pillow decoding of the first 100 CIFAR-10 JPEG test images (ImageFolder order).
    root = os.path.join(HERE, "../../../../../shared/datasets/cifar10-jpeg/test")
    files = [os.path.join(root, c, f) for c in sorted(os.listdir(root)) for f in sorted(os.listdir(os.path.join(root, c)))]
    pil = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files[:100]])
    np.save(os.path.join(FIX, "pillow_cifar10_jpeg_test_first100.npy"), pil)
    # Pillow resize of a seeded random image (8-bit arithmetic).
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, size=(8, 8, 3)).astype(np.uint8)
    pim = Image.fromarray(img)
    gold = {"input": img.flatten().tolist()}
    for name, filt in [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)]:
        for (h, w) in [(4, 4), (13, 5), (3, 8)]:
            gold[f"pillow_{name}_{h}x{w}"] = np.asarray(pim.resize((w, h), filt)).flatten().tolist()
    tin = os.path.join(HERE, "../../../../../shared/datasets/tiny-imagenet-200/val/images/val_0.JPEG")
    gold["tiny_val0_to32_bilinear"] = np.asarray(Image.open(tin).convert("RGB").resize((32, 32), Image.BILINEAR)).flatten().tolist()
    json.dump(gold, open(os.path.join(HERE, "pillow_resize.json"), "w"))


def torch_part():
    import torch
    import torch.nn.functional as F
    out = {"torch_version": torch.__version__, "randperm": {}}
    for n in [1, 2, 10, 1000, 50000, 73257, 100000]:
        g = torch.Generator().manual_seed(1)
        p = torch.randperm(n, generator=g)
        out["randperm"][str(n)] = {"first": p[:10].tolist(), "last": p[-10:].tolist(),
                                   "sha256_i64le": hashlib.sha256(p.numpy().astype("<i8").tobytes()).hexdigest()}
    # random_split as the seed calls it (seed spec §4.3).
    out["random_split"] = {}
    for n, frac in [(50000, 0.8), (50000, 0.95), (73257, 0.8), (100000, 0.8)]:
        tr = int(n * frac)
        g = torch.Generator().manual_seed(1)
        a, b = torch.utils.data.random_split(range(n), [tr, n - tr], generator=g)
        out["random_split"][f"{n}_{frac}"] = {"train_first": list(a.indices[:5]), "train_last": list(a.indices[-5:]),
                                             "valid_first": list(b.indices[:5]), "valid_last": list(b.indices[-5:])}
    torch.manual_seed(0)
    x = torch.rand(1, 2, 6, 7)
    out["interp_input"] = x.flatten().tolist()
    for mode in ["nearest", "bilinear", "bicubic", "area"]:
        for size in [(13, 10), (3, 4)]:
            kw = {} if mode in ("nearest", "area") else {"align_corners": False}
            y = F.interpolate(x, size=size, mode=mode, **kw)
            out[f"interp_{mode}_{size[0]}x{size[1]}"] = y.flatten().tolist()
    json.dump(out, open(os.path.join(HERE, "torch_reference.json"), "w"))


if __name__ == "__main__":
    if "--torch" in sys.argv:
        torch_part()
    else:
        pillow_part()
