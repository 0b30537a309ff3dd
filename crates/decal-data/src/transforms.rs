//! Per-image transforms: `ToTensor` → (greyscale→RGB) → (resize) → (random crop with zero padding) →
//! (horizontal flip) → `Normalize`, in that order, as the seed's torchvision pipelines do (seed spec §4.2).
//!
//! * Pixels become `f32` exactly like `ToTensor` (`x as f32 / 255`), and `Normalize` computes
//!   `(x − mean) / std` in `f32`, so un-augmented outputs are bit-identical to torchvision's.
//! * Random-crop padding is applied in `[0, 1]` space before normalisation, so padded pixels are 0 (black)
//!   and become `−mean/std` after normalisation, as in the seed.
//! * Randomness is a pure function of `(transform seed, epoch, image index)` (SplitMix64), so batches are
//!   identical whatever the number of threads. The draws are not torch's (the seed spec accepts that).
//! * The seed's quirk is opt-in: [`SeedCompat::augmented_validation`] (BUG-6). (BUG-5, the unshuffled
//!   training order, belongs to the training loop: `decal_train::stage1::Compat::SeedUnshuffled`.)

use decal_core::rng::splitmix64;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::resize::{resize_plane_f32, Filter};
use crate::{DatasetName, ImageSet};

/// Per-channel normalisation `x ← (x − mean_c) / std_c` on `[0, 1]` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means.
    pub mean: Vec<f32>,
    /// Channel standard deviations.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Builds a normalisation; `mean` and `std` must have the same length and positive stds.
    pub fn new(mean: &[f32], std: &[f32]) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() || std.iter().any(|s| s.is_nan() || *s <= 0.0)
        {
            return Err(DataError::Invalid(format!(
                "invalid normalisation mean {mean:?} std {std:?}"
            )));
        }
        Ok(Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// Mean 0, std 1 per channel (only `ToTensor`).
    pub fn identity(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The seed's constants (seed spec §4.2), including its questionable ones: CIFAR-100 with the
    /// std `(0.2011, 0.1987, 0.2025)`, SVHN with CIFAR-10's mean and the "wrong" CIFAR std. Tiny ImageNet
    /// uses ImageNet's statistics. MNIST / Fashion-MNIST are not seed datasets: their usual published
    /// constants are returned (`0.1307/0.3081`, `0.2860/0.3530`). `Imagefolder` has no constants: `None`.
    pub fn seed(dataset: DatasetName) -> Option<Self> {
        let (m, s): (&[f32], &[f32]) = match dataset {
            DatasetName::Cifar10 => (&[0.4914, 0.4822, 0.4465], &[0.247, 0.243, 0.261]),
            DatasetName::Cifar100 => (&[0.5074, 0.4867, 0.4411], &[0.2011, 0.1987, 0.2025]),
            DatasetName::Svhn => (&[0.4914, 0.4822, 0.4465], &[0.2023, 0.1994, 0.2010]),
            DatasetName::TinyImagenet => (&[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225]),
            DatasetName::Mnist => (&[0.1307], &[0.3081]),
            DatasetName::FashionMnist => (&[0.2860], &[0.3530]),
            DatasetName::Imagefolder => return None,
        };
        Some(Normalize {
            mean: m.to_vec(),
            std: s.to_vec(),
        })
    }

    /// **The** normalisation decal chooses for images of `dataset` with `channels` channels (one owner,
    /// issue #11): the seed's constants ([`Normalize::seed`]) when the name is a known dataset and they
    /// have `channels` entries, otherwise mean = std = 0.5 per channel (ImageFolder trees, synthetic sets).
    /// `decal train` records it in every checkpoint; a checkpoint that records none is read with it
    /// (`decal run`, `decal eval`), i.e. as if decal had trained it on that dataset.
    pub fn for_dataset(dataset: &str, channels: usize) -> Normalize {
        match DatasetName::parse(dataset).ok().and_then(Normalize::seed) {
            Some(n) if n.mean.len() == channels => n,
            _ => Normalize {
                mean: vec![0.5; channels],
                std: vec![0.5; channels],
            },
        }
    }

    /// Published statistics of each training set (what the seed's constants should have been):
    /// CIFAR-10 std `(0.2470, 0.2435, 0.2616)`, CIFAR-100 `(0.5071, 0.4865, 0.4409)/(0.2673, 0.2564,
    /// 0.2762)`, SVHN `(0.4377, 0.4438, 0.4728)/(0.1980, 0.2010, 0.1970)`. For other datasets the seed's
    /// constants are already the dataset's. [`Normalize::from_set`] computes them from data instead.
    pub fn corrected(dataset: DatasetName) -> Option<Self> {
        let (m, s): (&[f32], &[f32]) = match dataset {
            DatasetName::Cifar10 => (&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
            DatasetName::Cifar100 => (&[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762]),
            DatasetName::Svhn => (&[0.4377, 0.4438, 0.4728], &[0.1980, 0.2010, 0.1970]),
            other => return Normalize::seed(other),
        };
        Some(Normalize {
            mean: m.to_vec(),
            std: s.to_vec(),
        })
    }

    /// Per-channel mean and (population) std of a set's pixels in `[0, 1]`, accumulated in `f64`.
    pub fn from_set(set: &ImageSet) -> Result<Self> {
        let (mean, std) = channel_stats(set);
        Normalize::new(
            &mean.iter().map(|&m| m as f32).collect::<Vec<_>>(),
            &std.iter().map(|&s| s as f32).collect::<Vec<_>>(),
        )
    }
}

/// Per-channel mean and population std of a set's pixels scaled to `[0, 1]`.
pub fn channel_stats(set: &ImageSet) -> (Vec<f64>, Vec<f64>) {
    let c = set.channels.max(1);
    let mut sum = vec![0u64; c];
    let mut sq = vec![0u64; c];
    for px in set.pixels.chunks_exact(c) {
        for (k, &v) in px.iter().enumerate() {
            sum[k] += v as u64;
            sq[k] += (v as u64) * (v as u64);
        }
    }
    let n = (set.pixels.len() / c).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|&s| s as f64 / n / 255.0).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(&q, &m)| ((q as f64 / n / 65025.0) - m * m).max(0.0).sqrt())
        .collect();
    (mean, std)
}

/// The seed's behaviours that are bugs, each off unless asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeedCompat {
    /// BUG-6: the stage-1/2 validation subset uses the training transform (random crop + flip).
    pub augmented_validation: bool,
}

impl SeedCompat {
    /// Every quirk on, to reproduce the seed's numbers.
    pub fn all() -> Self {
        SeedCompat {
            augmented_validation: true,
        }
    }
}

/// One image transform; see the module documentation for the order of operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// Replicate a single channel to three (MNIST as OOD for an RGB model).
    pub grey_to_rgb: bool,
    /// Resize (in `f32`, after `ToTensor`) to `(height, width)` with this filter.
    pub resize: Option<(usize, usize, Filter)>,
    /// `RandomCrop(size, padding=p)` back to the (resized) image size, zero fill.
    pub crop_padding: Option<usize>,
    /// `RandomHorizontalFlip(p=0.5)`.
    pub hflip: bool,
    /// The normalisation.
    pub normalize: Normalize,
    /// Seed of the random draws.
    pub seed: u64,
}

/// The random draws of one image: crop offsets and flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draws {
    /// Vertical crop offset in the padded image, `0..=2·padding`.
    pub top: usize,
    /// Horizontal crop offset in the padded image.
    pub left: usize,
    /// Whether the image is mirrored.
    pub flip: bool,
}

impl Transform {
    /// Only `ToTensor` + `Normalize` (evaluation).
    pub fn eval(normalize: Normalize) -> Self {
        Transform {
            grey_to_rgb: false,
            resize: None,
            crop_padding: None,
            hflip: false,
            normalize,
            seed: 0,
        }
    }

    /// The seed's training transform for a dataset: CIFAR: crop(pad 4) + flip; SVHN: none; Tiny ImageNet:
    /// bicubic resize to 224 (no antialias, upsampling); MNIST-family: none. Normalised with the seed's
    /// constants.
    pub fn seed_train(dataset: DatasetName, seed: u64) -> Result<Self> {
        let mut t = Transform::seed_eval(dataset)?;
        if matches!(dataset, DatasetName::Cifar10 | DatasetName::Cifar100) {
            t.crop_padding = Some(4);
            t.hflip = true;
        }
        t.seed = seed;
        Ok(t)
    }

    /// The seed's evaluation transform (test, train-NLL pass, temperature-scaling validation, corruptions).
    pub fn seed_eval(dataset: DatasetName) -> Result<Self> {
        let normalize = Normalize::seed(dataset).ok_or_else(|| {
            DataError::Invalid(format!("{dataset}: no seed normalisation constants"))
        })?;
        let mut t = Transform::eval(normalize);
        if dataset == DatasetName::TinyImagenet {
            t.resize = Some((224, 224, Filter::Bicubic));
        }
        Ok(t)
    }

    /// The transform for the validation subset: the evaluation transform, or — with
    /// [`SeedCompat::augmented_validation`] (BUG-6) — the training transform.
    pub fn seed_valid(dataset: DatasetName, seed: u64, compat: SeedCompat) -> Result<Self> {
        if compat.augmented_validation {
            Transform::seed_train(dataset, seed)
        } else {
            Transform::seed_eval(dataset)
        }
    }

    /// Output `[C, H, W]` for input images of `(h, w, c)`.
    pub fn output_shape(&self, h: usize, w: usize, c: usize) -> [usize; 3] {
        let c = if self.grey_to_rgb && c == 1 { 3 } else { c };
        match self.resize {
            Some((rh, rw, _)) => [c, rh, rw],
            None => [c, h, w],
        }
    }

    /// Checks that the transform fits images of this set (channel count matches the normalisation).
    pub fn check(&self, set: &ImageSet) -> Result<()> {
        let [c, _, _] = self.output_shape(set.height, set.width, set.channels);
        if self.normalize.mean.len() != c {
            return Err(DataError::Invalid(format!(
                "{}: images have {c} channels after the transform but the normalisation has {} (use grey_to_rgb \
                 or a matching normalisation)",
                set.name,
                self.normalize.mean.len()
            )));
        }
        Ok(())
    }

    /// The random draws for image `index` in `epoch`.
    pub fn draws(&self, epoch: usize, index: usize) -> Draws {
        let h = splitmix64(self.seed ^ splitmix64((epoch as u64) << 32 ^ index as u64 ^ 0x5eed));
        let span = self.crop_padding.map(|p| 2 * p as u64 + 1).unwrap_or(1);
        let top = (h % span) as usize;
        let left = ((h >> 20) % span) as usize;
        let flip = self.hflip && (splitmix64(h) >> 11) as f64 / (1u64 << 53) as f64 >= 0.5;
        Draws { top, left, flip }
    }

    /// Applies the transform to image `index` of `set` in `epoch`, writing `[C, H, W]` into `out`.
    pub fn apply_into(&self, set: &ImageSet, index: usize, epoch: usize, out: &mut [f32]) {
        let (h, w, c_in) = (set.height, set.width, set.channels);
        let [c, oh, ow] = self.output_shape(h, w, c_in);
        debug_assert_eq!(out.len(), c * oh * ow);
        let img = set.image(index);
        let d = self.draws(epoch, index);
        let pad = self.crop_padding.unwrap_or(0) as isize;
        // ToTensor (+ grey→RGB): without a resize, read the bytes directly; with one, resize [0, 1] planes.
        let planes: Option<Vec<Vec<f32>>> = self.resize.map(|(rh, rw, filter)| {
            (0..c)
                .map(|ch| {
                    let src_ch = if c_in == 1 { 0 } else { ch };
                    let p: Vec<f32> = (0..h * w)
                        .map(|p| img[p * c_in + src_ch] as f32 / 255.0)
                        .collect();
                    resize_plane_f32(&p, h, w, rh, rw, filter)
                })
                .collect()
        });
        for ch in 0..c {
            let (m, s) = (self.normalize.mean[ch], self.normalize.std[ch]);
            let src_ch = if c_in == 1 { 0 } else { ch };
            let dst = &mut out[ch * oh * ow..(ch + 1) * oh * ow];
            for y in 0..oh {
                let sy = y as isize + d.top as isize - pad;
                for x in 0..ow {
                    let xx = if d.flip { ow - 1 - x } else { x };
                    let sx = xx as isize + d.left as isize - pad;
                    let v = if sy >= 0 && sx >= 0 && (sy as usize) < oh && (sx as usize) < ow {
                        let p = sy as usize * ow + sx as usize;
                        match &planes {
                            Some(pl) => pl[ch][p],
                            None => img[p * c_in + src_ch] as f32 / 255.0,
                        }
                    } else {
                        0.0
                    };
                    dst[y * ow + x] = (v - m) / s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ImageSet {
        ImageSet {
            name: "t/train".into(),
            height: 2,
            width: 3,
            channels: 3,
            pixels: (0..18).map(|v| v as u8 * 10).collect(),
            labels: vec![0],
            class_names: vec!["a".into()],
        }
    }

    #[test]
    fn eval_is_totensor_then_normalize_in_f32() {
        let n = Normalize::seed(DatasetName::Cifar10).unwrap();
        let t = Transform::eval(n.clone());
        let mut out = vec![0f32; 18];
        t.apply_into(&set(), 0, 0, &mut out);
        // Channel 1, pixel (0, 1) is HWC byte 1·3 + 1 = 4 → value 40.
        assert_eq!(out[6 + 1], (40f32 / 255.0 - n.mean[1]) / n.std[1]);
    }

    #[test]
    fn crop_pads_with_black_and_flip_mirrors() {
        let mut t = Transform::eval(Normalize::identity(3));
        t.crop_padding = Some(1);
        t.hflip = true;
        let mut seen_pad = false;
        let mut seen_flip = false;
        for e in 0..50 {
            let d = t.draws(e, 0);
            assert!(d.top <= 2 && d.left <= 2);
            let mut out = vec![0f32; 18];
            t.apply_into(&set(), 0, e, &mut out);
            if d.top == 0 {
                // First row comes from the zero padding.
                assert!(out[..3].iter().all(|&v| v == 0.0));
                seen_pad = true;
            }
            if d.flip && d.top == 1 && d.left == 1 {
                // Centred crop, mirrored: out(0, 0) = src(0, 2) channel 0 = byte 6 → 60.
                assert_eq!(out[0], 60.0 / 255.0);
                seen_flip = true;
            }
            // Same (seed, epoch, index) → same draws.
            assert_eq!(t.draws(e, 0), d);
        }
        assert!(seen_pad && seen_flip);
    }

    #[test]
    fn seed_compat_only_when_named() {
        let v = Transform::seed_valid(DatasetName::Cifar10, 1, SeedCompat::default()).unwrap();
        assert!(v.crop_padding.is_none() && !v.hflip);
        let v = Transform::seed_valid(DatasetName::Cifar10, 1, SeedCompat::all()).unwrap();
        assert_eq!((v.crop_padding, v.hflip), (Some(4), true));
        assert_eq!(
            Transform::seed_eval(DatasetName::TinyImagenet)
                .unwrap()
                .resize,
            Some((224, 224, Filter::Bicubic))
        );
    }

    #[test]
    fn one_normalisation_rule() {
        let c10 = Normalize::for_dataset("cifar10", 3);
        assert_eq!(c10, Normalize::seed(DatasetName::Cifar10).unwrap());
        assert_eq!(
            Normalize::for_dataset("fashion-mnist", 1).mean,
            vec![0.2860]
        );
        // No constants (ImageFolder, unknown names) or constants of another channel count: 0.5 / 0.5.
        for (name, c) in [("imagefolder", 3), ("my-synthetic-set", 2), ("mnist", 3)] {
            let n = Normalize::for_dataset(name, c);
            assert_eq!((n.mean, n.std), (vec![0.5; c], vec![0.5; c]), "{name}");
        }
    }
}
