//! The batch loader: `(Arc<ImageSet>, indices, Transform)` → [`Batch`]es, with a seeded per-epoch shuffle,
//! images transformed in parallel on a dedicated thread pool, and a bounded prefetch queue.
//!
//! Determinism: the order of an epoch is `indices` permuted by `torch_randperm(len, seed + epoch)`
//! (when shuffling), and every image's augmentation depends only on `(transform seed, epoch, image index)`,
//! so batches are identical for any `num_workers`, including 0 (everything on the calling thread).

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::split::torch_randperm;
use crate::transforms::{SeedCompat, Transform};
use crate::{Batch, ImageSet};

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Reshuffle every epoch (the seed's training loader does not: BUG-5).
    pub shuffle: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Drop the last, smaller batch.
    pub drop_last: bool,
    /// Threads that transform images; 0 = the calling thread only, no prefetch.
    pub num_workers: usize,
}

impl LoaderConfig {
    /// An evaluation loader: no shuffle, keep the last batch.
    pub fn eval(batch_size: usize, num_workers: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            seed: 0,
            drop_last: false,
            num_workers,
        }
    }

    /// A training loader: reshuffled every epoch, keeping the last batch (the seed's `drop_last=False`),
    /// unless [`SeedCompat::unshuffled_training`] (BUG-5) asks for the seed's fixed order.
    pub fn train(batch_size: usize, seed: u64, compat: SeedCompat, num_workers: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: !compat.unshuffled_training,
            seed,
            drop_last: false,
            num_workers,
        }
    }
}

/// Batches prepared ahead of the consumer.
const PREFETCH: usize = 4;

/// A reusable loader over a subset of an [`ImageSet`].
pub struct Loader {
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    transform: Arc<Transform>,
    cfg: LoaderConfig,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Loader {
    /// Validates indices and the transform against the set and builds the worker pool.
    pub fn new(
        set: Arc<ImageSet>,
        indices: Vec<usize>,
        transform: Transform,
        cfg: LoaderConfig,
    ) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        if let Some(&i) = indices.iter().find(|&&i| i >= set.len()) {
            return Err(DataError::Invalid(format!(
                "{}: index {i} out of range 0..{}",
                set.name,
                set.len()
            )));
        }
        transform.check(&set)?;
        // A shuffled or augmenting loader is a training loader: never over held-out test data.
        if set.is_test_split()
            && (cfg.shuffle || transform.crop_padding.is_some() || transform.hflip)
        {
            return Err(DataError::Invalid(format!(
                "{}: refusing a shuffled/augmenting (training) loader over a test split",
                set.name
            )));
        }
        let pool = if cfg.num_workers > 0 {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(cfg.num_workers)
                .thread_name(|i| format!("decal-loader-{i}"))
                .build()
                .map_err(|e| DataError::Invalid(format!("cannot start loader threads: {e}")))?;
            Some(Arc::new(p))
        } else {
            None
        };
        Ok(Loader {
            set,
            indices: Arc::new(indices),
            transform: Arc::new(transform),
            cfg,
            pool,
        })
    }

    /// A loader over every image of `set`.
    pub fn all(set: Arc<ImageSet>, transform: Transform, cfg: LoaderConfig) -> Result<Self> {
        let n = set.len();
        Loader::new(set, (0..n).collect(), transform, cfg)
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.indices.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// The image order of `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        if self.cfg.shuffle {
            let perm = torch_randperm(self.indices.len(), self.cfg.seed.wrapping_add(epoch as u64));
            perm.into_iter().map(|p| self.indices[p]).collect()
        } else {
            self.indices.as_ref().clone()
        }
    }

    /// The batches of `epoch`, produced ahead of time on the worker threads (bounded prefetch).
    pub fn epoch(&self, epoch: usize) -> impl Iterator<Item = Batch> + Send + 'static {
        let order = self.order(epoch);
        let nb = self.num_batches();
        let chunks: Vec<Vec<usize>> = order
            .chunks(self.cfg.batch_size)
            .take(nb)
            .map(|c| c.to_vec())
            .collect();
        let (set, transform) = (Arc::clone(&self.set), Arc::clone(&self.transform));
        match &self.pool {
            None => EpochIter::Inline {
                chunks: chunks.into_iter(),
                set,
                transform,
                epoch,
            },
            Some(pool) => {
                let pool = Arc::clone(pool);
                let (tx, rx) = sync_channel(PREFETCH);
                let handle = std::thread::Builder::new()
                    .name("decal-loader-feed".into())
                    .spawn(move || {
                        for c in chunks {
                            let b = pool.install(|| make_batch(&set, &transform, &c, epoch, true));
                            if tx.send(b).is_err() {
                                break; // consumer dropped the iterator
                            }
                        }
                    })
                    .expect("spawning the loader feed thread");
                EpochIter::Threaded {
                    rx,
                    _handle: handle,
                }
            }
        }
    }
}

enum EpochIter {
    Inline {
        chunks: std::vec::IntoIter<Vec<usize>>,
        set: Arc<ImageSet>,
        transform: Arc<Transform>,
        epoch: usize,
    },
    Threaded {
        rx: Receiver<Batch>,
        _handle: JoinHandle<()>,
    },
}

impl Iterator for EpochIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        match self {
            EpochIter::Inline {
                chunks,
                set,
                transform,
                epoch,
            } => chunks
                .next()
                .map(|c| make_batch(set, transform, &c, *epoch, false)),
            EpochIter::Threaded { rx, .. } => rx.recv().ok(),
        }
    }
}

/// Transforms the images `idx` into one batch.
pub fn make_batch(
    set: &ImageSet,
    t: &Transform,
    idx: &[usize],
    epoch: usize,
    parallel: bool,
) -> Batch {
    let [c, h, w] = t.output_shape(set.height, set.width, set.channels);
    let per = c * h * w;
    let mut images = vec![0f32; per * idx.len()];
    if parallel {
        images
            .par_chunks_mut(per)
            .zip(idx.par_iter())
            .for_each(|(dst, &i)| t.apply_into(set, i, epoch, dst));
    } else {
        images
            .chunks_mut(per)
            .zip(idx)
            .for_each(|(dst, &i)| t.apply_into(set, i, epoch, dst));
    }
    Batch {
        images,
        shape: [idx.len(), c, h, w],
        labels: idx.iter().map(|&i| set.labels[i] as i64).collect(),
        indices: idx.to_vec(),
    }
}
