"""Per-corruption statistics of the original CIFAR-10-C recipe, for comparison with decal-corrupt.

Runs the distortion functions of Hendrycks & Dietterich's `make_cifar_c.py` (not copied here: pass
the path of your checkout of github.com/hendrycks/robustness, file ImageNet-C/create_c/make_cifar_c.py)
on the images of a uint8 [N, 32, 32, 3] .npy and writes, for every corruption and severity, the mean
absolute pixel change |corrupted - clean| (0..255 units, averaged over images, pixels and channels)
and the mean signed change, as JSON.

Only the part of the script before the dataset loop is executed, with shims for library APIs that
changed since 2018 (np.float_, skimage's multichannel=, scipy.ndimage.interpolation, np.fromstring).

Usage (scratch venv: pip install numpy scipy scikit-image opencv-python-headless wand pillow;
ImageMagick's MagickWand library is needed for motion_blur and snow):
    python reference_stats.py MAKE_CIFAR_C_PY SOURCE_NPY FROST_DIR OUT_JSON [REPEATS]
"""
import json
import os
import sys
import time

import numpy as np


def load_recipe(path):
    src = open(path).read()
    src = src.split("import collections")[0]  # helpers + distortions only
    src = src.replace("np.float_", "np.float64")
    src = src.replace("multichannel=True", "channel_axis=-1")
    src = src.replace("from scipy.ndimage.interpolation import", "from scipy.ndimage import")
    src = src.replace("np.fromstring(", "np.frombuffer(")
    # torch/torchvision are imported by the script but not used by the distortions.
    src = src.replace("import torch\n", "").replace("import torchvision.datasets as dset\n", "")
    src = src.replace("import torchvision.transforms as trn\n", "").replace("import torch.utils.data as data\n", "")
    env = {"__name__": "make_cifar_c"}
    exec(compile(src, path, "exec"), env)
    return env


NAMES = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
         "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
         "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate"]


def compute_stats(env, source, repeats=1, names=NAMES):
    """Mean |corrupted - clean| and mean signed change per corruption and severity (0..255 units)."""
    from PIL import Image
    stats = {}
    for name in names:
        fn = env[name]
        t0 = time.time()
        per_sev = []
        for severity in range(1, 6):
            abs_sum, signed_sum, count = 0.0, 0.0, 0
            for _ in range(repeats):
                for img in source:
                    out = np.uint8(fn(Image.fromarray(img), severity))
                    diff = out.astype(np.float64) - img.astype(np.float64)
                    abs_sum += np.abs(diff).sum()
                    signed_sum += diff.sum()
                    count += diff.size
            per_sev.append({"severity": severity, "mean_abs_change": abs_sum / count,
                            "mean_change": signed_sum / count})
        stats[name] = per_sev
        print(f"{name}: " + " ".join(f"{s['mean_abs_change']:.2f}" for s in per_sev)
              + f"  ({time.time() - t0:.1f}s)", flush=True)
    return stats


def versions():
    import cv2, scipy, skimage, PIL, wand.version
    return {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-image": skimage.__version__,
            "opencv": cv2.__version__, "pillow": PIL.__version__, "imagemagick": wand.version.MAGICK_VERSION}


def main():
    recipe_path, source_npy, frost_dir, out_json = sys.argv[1:5]
    repeats = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    recipe_path = os.path.abspath(recipe_path)
    source = np.load(source_npy)
    env = load_recipe(recipe_path)
    os.chdir(frost_dir)  # frost() opens './frost1.png' ...
    np.random.seed(0)
    stats = compute_stats(env, source, repeats)
    meta = {"source": os.path.abspath(source_npy), "num_images": int(len(source)), "repeats": repeats,
            "numpy_seed": 0, "versions": versions()}
    with open(out_json, "w") as f:
        json.dump({"meta": meta, "stats": stats}, f, indent=1)


if __name__ == "__main__":
    main()
