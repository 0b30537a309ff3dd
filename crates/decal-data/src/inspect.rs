//! Dataset statistics for `decal data inspect`: counts per class, image geometry, per-channel mean/std,
//! and exact duplicates by content (within a split, and between two splits — Tiny ImageNet has images
//! shared between train and val).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::Serialize;

use crate::transforms::channel_stats;
use crate::ImageSet;

/// The statistics of one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitReport {
    /// Set name (`cifar10/train`).
    pub name: String,
    /// Number of images.
    pub images: usize,
    /// `[height, width, channels]`.
    pub shape: [usize; 3],
    /// `(class name, count)` in label order.
    pub class_counts: Vec<(String, usize)>,
    /// Per-channel mean of pixel values in `[0, 1]`.
    pub mean: Vec<f64>,
    /// Per-channel population std of pixel values in `[0, 1]`.
    pub std: Vec<f64>,
    /// Groups of images with identical pixels (each group listed by index, at most 20 groups kept).
    pub duplicate_groups: usize,
    /// Images that are a copy of an earlier image in the split.
    pub duplicate_images: usize,
    /// Example groups (indices), for inspection.
    pub duplicate_examples: Vec<Vec<usize>>,
    /// Duplicate groups whose members carry different labels.
    pub conflicting_label_groups: usize,
}

fn image_hash(px: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    px.hash(&mut h);
    h.finish()
}

/// Groups of identical images (by pixels; hash collisions are resolved by comparing bytes).
pub fn duplicate_groups(set: &ImageSet) -> Vec<Vec<usize>> {
    let mut by_hash: HashMap<u64, Vec<Vec<usize>>> = HashMap::new();
    for i in 0..set.len() {
        let groups = by_hash.entry(image_hash(set.image(i))).or_default();
        match groups.iter_mut().find(|g| set.image(g[0]) == set.image(i)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    let mut out: Vec<Vec<usize>> = by_hash
        .into_values()
        .flatten()
        .filter(|g| g.len() > 1)
        .collect();
    out.sort();
    out
}

/// Indices of `a` whose pixels also occur in `b` (same geometry required, else empty).
pub fn shared_images(a: &ImageSet, b: &ImageSet) -> Vec<usize> {
    if (a.height, a.width, a.channels) != (b.height, b.width, b.channels) {
        return Vec::new();
    }
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for j in 0..b.len() {
        index.entry(image_hash(b.image(j))).or_default().push(j);
    }
    (0..a.len())
        .filter(|&i| {
            index
                .get(&image_hash(a.image(i)))
                .is_some_and(|js| js.iter().any(|&j| b.image(j) == a.image(i)))
        })
        .collect()
}

/// Computes the report of one split.
pub fn report(set: &ImageSet) -> SplitReport {
    let (mean, std) = channel_stats(set);
    let groups = duplicate_groups(set);
    let conflicting = groups
        .iter()
        .filter(|g| g.iter().any(|&i| set.labels[i] != set.labels[g[0]]))
        .count();
    SplitReport {
        name: set.name.clone(),
        images: set.len(),
        shape: [set.height, set.width, set.channels],
        class_counts: set
            .class_names
            .iter()
            .cloned()
            .zip(set.class_counts())
            .collect(),
        mean,
        std,
        duplicate_groups: groups.len(),
        duplicate_images: groups.iter().map(|g| g.len() - 1).sum(),
        duplicate_examples: groups.iter().take(20).cloned().collect(),
        conflicting_label_groups: conflicting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_and_shared_images() {
        let set = ImageSet {
            name: "t/train".into(),
            height: 1,
            width: 2,
            channels: 1,
            pixels: vec![1, 2, 3, 4, 1, 2, 1, 2, 9, 9],
            labels: vec![0, 1, 0, 1, 1],
            class_names: vec!["a".into(), "b".into()],
        };
        let r = report(&set);
        assert_eq!(
            (
                r.duplicate_groups,
                r.duplicate_images,
                r.conflicting_label_groups
            ),
            (1, 2, 1)
        );
        assert_eq!(r.duplicate_examples, vec![vec![0, 2, 3]]);
        assert_eq!(
            r.class_counts,
            vec![("a".to_string(), 2), ("b".to_string(), 3)]
        );
        let other = ImageSet {
            pixels: vec![9, 9],
            labels: vec![0],
            ..set.clone()
        };
        assert_eq!(shared_images(&set, &other), vec![4]);
    }
}
