//! Stage-1 input: the training set and its seed split ([`Stage1Data`]), the per-epoch generator
//! ([`SplitMix64`]) and the images on the device with the batch transform ([`DeviceImages`]: crop with
//! zero padding, flip, normalisation, vectorised over the batch).

use tch::{Device, Kind, Tensor};

use super::{canonical_dataset, normalization, Stage1Error, Stage1Plan};
use decal_data::ImageSet;

/// The data of a stage-1 run: the training `ImageSet` and the split indices into it.
#[derive(Debug, Clone)]
pub struct Stage1Data {
    /// The full training set (train + validation parts).
    pub set: ImageSet,
    /// Indices of the training part, in the split's order.
    pub train_indices: Vec<usize>,
    /// Indices of the validation part.
    pub val_indices: Vec<usize>,
    /// Per-channel mean for normalisation.
    pub mean: Vec<f32>,
    /// Per-channel std for normalisation.
    pub std: Vec<f32>,
    /// The full seed split (before `limit_train` / `limit_val`, which keep evenly spaced entries of its parts);
    /// written to the run directory as `split.json`.
    pub manifest: decal_data::split::SplitManifest,
}

impl Stage1Data {
    /// Splits `set` as the plan says (seed split, then `limit_train` / `limit_val` through
    /// [`decal_data::split::limit`]).
    pub fn from_set(set: ImageSet, plan: &Stage1Plan) -> Result<Self, Stage1Error> {
        if set.len() < 2 {
            return Err(Stage1Error::Plan(format!(
                "dataset {} has {} images; need at least 2",
                set.name,
                set.len()
            )));
        }
        let manifest = decal_data::split::SplitManifest::seed(
            &canonical_dataset(&plan.dataset),
            set.len(),
            plan.train_fraction,
            plan.split_seed,
        )?;
        let train_indices = decal_data::split::limit(&manifest.train_indices, plan.limit_train);
        let val_indices = decal_data::split::limit(&manifest.valid_indices, plan.limit_val);
        if train_indices.is_empty() || val_indices.is_empty() {
            return Err(Stage1Error::Plan(format!(
                "split of {} images with train_fraction {} leaves an empty train or validation part",
                set.len(),
                plan.train_fraction
            )));
        }
        let (mean, std) = normalization(&plan.dataset, set.channels);
        Ok(Stage1Data {
            set,
            train_indices,
            val_indices,
            mean,
            std,
            manifest,
        })
    }

    /// Loads the plan's dataset (training split) from `plan.data_dir` and splits it.
    pub fn load(plan: &Stage1Plan) -> Result<Self, Stage1Error> {
        let name = decal_data::DatasetName::parse(&plan.dataset)?;
        let set = decal_data::load(name, &plan.data_dir, decal_data::SplitName::Train)?;
        Self::from_set(set, plan)
    }

    /// SHA-256 of the full split (`decal_data::split::SplitManifest::sha256`: train then validation
    /// indices as little-endian u64s).
    pub fn split_hash(&self) -> String {
        self.manifest.sha256.clone()
    }

    /// SHA-256 over the pixels and labels of the whole set: identifies the data.
    pub fn data_hash(&self) -> String {
        let mut bytes = self.set.pixels.clone();
        for &l in &self.set.labels {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
        decal_core::sha256_bytes(&bytes)
    }
}

/// SplitMix64: a small, fast, well-mixed generator for shuffling and augmentation draws. Seeded
/// per `(seed, epoch, stream)`, so every epoch's draws are reproducible on their own.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `(seed, epoch, stream)`.
    pub fn for_epoch(seed: u64, epoch: usize, stream: u64) -> Self {
        let mut g = SplitMix64(seed ^ decal_core::rng::SPLITMIX64_GAMMA);
        let a = g.next_u64() ^ (epoch as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let mut g = SplitMix64(a);
        let b = g.next_u64() ^ stream.wrapping_mul(0x94D0_49BB_1331_11EB);
        SplitMix64(b)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let z = decal_core::rng::splitmix64(self.0);
        self.0 = self.0.wrapping_add(decal_core::rng::SPLITMIX64_GAMMA);
        z
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift; the bias is < n/2⁶⁴, negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Images of one dataset as a `u8` `[N, H, W, C]` tensor on the training device, with the batch
/// transform (augmentation + normalisation) applied on the device.
pub struct DeviceImages {
    pixels: Tensor,
    labels: Tensor,
    mean: Tensor,
    std: Tensor,
    height: i64,
    width: i64,
}

impl std::fmt::Debug for DeviceImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceImages")
            .field("shape", &self.pixels.size())
            .finish()
    }
}

/// Zero padding of the seed's `RandomCrop(32, padding=4)` (pixels on each side).
pub const CROP_PADDING: i64 = 4;

impl DeviceImages {
    /// Uploads `set` to `device`.
    pub fn new(set: &ImageSet, mean: &[f32], std: &[f32], device: Device) -> Self {
        let (n, h, w, c) = (
            set.len() as i64,
            set.height as i64,
            set.width as i64,
            set.channels as i64,
        );
        let pixels = Tensor::from_slice(&set.pixels)
            .view([n, h, w, c])
            .to_device(device);
        let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::from_slice(&labels).to_device(device);
        let mean = Tensor::from_slice(mean)
            .view([1, c, 1, 1])
            .to_device(device);
        let std = Tensor::from_slice(std).view([1, c, 1, 1]).to_device(device);
        DeviceImages {
            pixels,
            labels,
            mean,
            std,
            height: h,
            width: w,
        }
    }

    /// The batch of images `indices` as normalised float `[B, C, H, W]` plus labels `[B]`. With `rng`,
    /// applies random crop (zero padding [`CROP_PADDING`], offsets uniform in `0..=2·padding`) and a
    /// horizontal flip with probability ½, in `[0, 1]` space before normalising, as the seed's transform.
    pub fn batch(&self, indices: &[usize], rng: Option<&mut SplitMix64>) -> (Tensor, Tensor) {
        let device = self.pixels.device();
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        // ToTensor: uint8 HWC → float CHW in [0, 1].
        let mut x = self
            .pixels
            .index_select(0, &idx)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        if let Some(rng) = rng {
            x = self.augment(&x, rng);
        }
        let x = (x - &self.mean) / &self.std;
        (x, self.labels.index_select(0, &idx))
    }

    fn augment(&self, x: &Tensor, rng: &mut SplitMix64) -> Tensor {
        let b = x.size()[0];
        let (h, w, p) = (self.height, self.width, CROP_PADDING);
        let mut rows = Vec::with_capacity(b as usize);
        let mut cols = Vec::with_capacity(b as usize);
        let mut flips = Vec::with_capacity(b as usize);
        for _ in 0..b {
            rows.push(rng.below(2 * p as u64 + 1) as i64);
            cols.push(rng.below(2 * p as u64 + 1) as i64);
            flips.push(rng.below(2) == 1);
        }
        let device = x.device();
        let c = x.size()[1];
        let padded = x.constant_pad_nd([p, p, p, p]); // [B, C, H+2p, W+2p], zeros = black in [0, 1] space
                                                      // Row gather: out[b, c, i, :] = padded[b, c, rows[b] + i, :].
        let ar_h = Tensor::arange(h, (Kind::Int64, device));
        let ar_w = Tensor::arange(w, (Kind::Int64, device));
        let r = Tensor::from_slice(&rows)
            .to_device(device)
            .view([b, 1, 1, 1])
            + ar_h.view([1, 1, h, 1]);
        let r = r.expand([b, c, h, w + 2 * p], true);
        let x = padded.gather(2, &r, false);
        let cc = Tensor::from_slice(&cols)
            .to_device(device)
            .view([b, 1, 1, 1])
            + ar_w.view([1, 1, 1, w]);
        let cc = cc.expand([b, c, h, w], true);
        let x = x.gather(3, &cc, false);
        let flip = Tensor::from_slice(&flips)
            .to_device(device)
            .view([b, 1, 1, 1]);
        x.flip([3]).where_self(&flip, &x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_uniform_enough() {
        let mut a = SplitMix64::for_epoch(7, 3, 1);
        let mut b = SplitMix64::for_epoch(7, 3, 1);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut c = SplitMix64::for_epoch(7, 4, 1);
        assert_ne!(SplitMix64::for_epoch(7, 3, 1).next_u64(), c.next_u64());
        let mut counts = [0usize; 9];
        let mut g = SplitMix64::for_epoch(1, 0, 0);
        for _ in 0..90_000 {
            counts[g.below(9) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let mut v: Vec<usize> = (0..100).collect();
        g.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn data_seed_split_matches_torch_randperm() {
        // torch 2.11: g = torch.Generator(); g.manual_seed(1); torch.randperm(10, generator=g)
        let (train, val) = decal_data::split::seed_split(10, 0.8, 1);
        assert_eq!(train, vec![5, 6, 1, 2, 0, 8, 9, 3]);
        assert_eq!(val, vec![7, 4]);
        let (train, val) = decal_data::split::seed_split(50_000, 0.8, 1);
        assert_eq!(&train[..5], &[45845, 11799, 43880, 43701, 41303]);
        assert_eq!(&val[val.len() - 3..], &[37038, 8785, 8475]);
        assert_eq!((train.len(), val.len()), (40_000, 10_000));
    }

    #[test]
    fn crop_and_flip_move_pixels_as_torchvision() {
        // One 1-channel 4x4 image with distinct values; crop offsets and flips are checked against a
        // direct computation on the padded image.
        let set = ImageSet {
            name: "t".into(),
            height: 4,
            width: 4,
            channels: 1,
            pixels: (0..16u8).map(|v| v * 10).collect(),
            labels: vec![0],
            class_names: vec!["a".into()],
        };
        let images = DeviceImages::new(&set, &[0.0], &[1.0], Device::Cpu);
        for seed in 0..20u64 {
            let mut rng = SplitMix64::for_epoch(seed, 0, 2);
            let mut probe = rng.clone();
            let (r, c, flip) = (
                probe.below(9) as i64,
                probe.below(9) as i64,
                probe.below(2) == 1,
            );
            let (x, _) = images.batch(&[0], Some(&mut rng));
            let x: Vec<f32> = Vec::<f32>::try_from(&x.view([-1])).unwrap();
            for i in 0..4i64 {
                for j in 0..4i64 {
                    let jj = if flip { 3 - j } else { j };
                    let (pi, pj) = (r + i - CROP_PADDING, c + jj - CROP_PADDING);
                    let want = if (0..4).contains(&pi) && (0..4).contains(&pj) {
                        (pi * 4 + pj) as f32 * 10.0 / 255.0
                    } else {
                        0.0
                    };
                    assert_eq!(
                        x[(i * 4 + j) as usize],
                        want,
                        "seed {seed} ({r},{c},{flip}) at {i},{j}"
                    );
                }
            }
        }
    }
}
