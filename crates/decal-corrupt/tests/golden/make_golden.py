"""Golden outputs of the original CIFAR-10-C recipe for decal-corrupt's tests.

Runs the distortion functions of Hendrycks & Dietterich's make_cifar_c.py (pass the path of your
checkout of github.com/hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py; the script is not
copied here) on three 32x32 images and saves, compressed, in golden.npz:
  source               uint8 [3, 32, 32, 3]  two CIFAR-10 test images + one synthetic colour chart
  <name>               uint8 [5, 3, 32, 32, 3] for the deterministic corruptions (no randomness):
                       defocus_blur, zoom_blur, brightness, contrast, pixelate, jpeg_compression,
                       gaussian_blur, saturate
  motion_blur          uint8 [5, 3, 32, 32, 3] ImageMagick MotionBlurImage with the severity's
                       (radius, sigma) and the fixed angles MOTION_ANGLES (the recipe draws them)
  motion_angles        float64 [5]

and, in reference_stats_samples.json, the mean |corrupted - clean| per corruption and severity of the
recipe on the 20 CIFAR-10 sample PNGs (all 19 corruptions, REPEATS passes with np.random.seed(0)),
which tests/statistics.rs compares with decal-corrupt's generated corruptions.

Environment used for the committed file: see golden_versions.json (written alongside).
Usage: python make_golden.py MAKE_CIFAR_C_PY SAMPLES_DIR FROST_DIR
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "bench", "corrupt"))
from reference_stats import compute_stats, load_recipe, versions  # noqa: E402

REPEATS = 5

DETERMINISTIC = ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
                 "gaussian_blur", "saturate"]
MOTION_ANGLES = [-45.0, -20.5, 0.0, 17.25, 45.0]


def colour_chart():
    """Pure and mixed colours, black, white and grey ramps: stresses HSV ties and clipping."""
    y, x = np.mgrid[0:32, 0:32]
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = (x * 255) // 31
    img[..., 1] = (y * 255) // 31
    img[..., 2] = ((31 - x) * 255) // 31
    img[:8, :8] = 0
    img[:8, 8:16] = 255
    img[:8, 16:24] = [255, 0, 0]
    img[:8, 24:] = [0, 255, 0]
    img[8:16, :8] = [0, 0, 255]
    img[8:16, 8:16] = [128, 128, 128]
    img[8:16, 16:24] = [255, 255, 0]
    return img


def main():
    recipe_path, samples, frost_dir = sys.argv[1:4]
    samples, frost_dir = os.path.abspath(samples), os.path.abspath(frost_dir)
    env = load_recipe(os.path.abspath(recipe_path))
    from PIL import Image
    files = [os.path.join(samples, f) for f in ("cifar10_00_3.png", "cifar10_01_8.png")]
    source = np.stack([np.array(Image.open(f).convert("RGB")) for f in files] + [colour_chart()])
    out = {"source": source, "motion_angles": np.array(MOTION_ANGLES)}
    for name in DETERMINISTIC:
        fn = env[name]
        out[name] = np.stack([np.stack([np.uint8(fn(Image.fromarray(img), s)) for img in source])
                              for s in range(1, 6)])
    # motion_blur with fixed angles: the recipe's body with np.random.uniform replaced by the angle.
    from io import BytesIO
    import cv2
    MotionImage = env["MotionImage"]
    radii = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]
    sev = []
    for (radius, sigma), angle in zip(radii, MOTION_ANGLES):
        imgs = []
        for img in source:
            buf = BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            wand_img = MotionImage(blob=buf.getvalue())
            wand_img.motion_blur(radius=radius, sigma=sigma, angle=angle)
            dec = cv2.imdecode(np.frombuffer(wand_img.make_blob(), np.uint8), cv2.IMREAD_UNCHANGED)
            imgs.append(np.clip(dec[..., [2, 1, 0]], 0, 255).astype(np.uint8))
        sev.append(np.stack(imgs))
    out["motion_blur"] = np.stack(sev)
    here = os.path.dirname(os.path.abspath(__file__))
    np.savez_compressed(os.path.join(here, "golden.npz"), **out)
    with open(os.path.join(here, "golden_versions.json"), "w") as f:
        json.dump(versions(), f, indent=1)
    # Statistics on the 20 sample images (sorted names = official test order).
    names = sorted(f for f in os.listdir(samples) if f.startswith("cifar10_") and f.endswith(".png"))
    all_samples = np.stack([np.array(Image.open(os.path.join(samples, f)).convert("RGB")) for f in names])
    os.chdir(frost_dir)  # frost() opens './frost1.png' ...
    np.random.seed(0)
    stats = compute_stats(env, all_samples, REPEATS)
    with open(os.path.join(here, "reference_stats_samples.json"), "w") as f:
        json.dump({"meta": {"images": names, "repeats": REPEATS, "numpy_seed": 0, "versions": versions()},
                   "stats": stats}, f, indent=1)
    print("wrote golden.npz", {k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
