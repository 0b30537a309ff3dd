//! Any dataset as an out-of-distribution set for another: its images are brought to the in-distribution
//! geometry (size with Pillow's bilinear filter — torchvision's default `Resize` on PIL images — and
//! channel count), and are then fed through the **in-distribution** transform, so they are normalised with
//! the in-distribution constants as the seed does (seed spec §4.2, §10.5). Labels are kept but belong to
//! the OOD set's own classes; OOD metrics only use the "is OOD" flag.
//!
//! Out of the box: Tiny ImageNet (64×64) → 32×32 against CIFAR-10; MNIST against Fashion-MNIST (same
//! geometry, nothing to do); MNIST/Fashion-MNIST (28×28 grey) against CIFAR (→ 32×32 RGB).

use crate::error::Result;
use crate::imagefolder::rgb_to_grey_pil;
use crate::resize::{resize_u8, Filter};
use crate::ImageSet;

/// Resizes and converts `ood` to the height, width and channels of `like`, with [`Filter::BilinearAntialias`].
pub fn prepare(ood: &ImageSet, like: &ImageSet) -> Result<ImageSet> {
    prepare_with(
        ood,
        like.height,
        like.width,
        like.channels,
        Filter::BilinearAntialias,
    )
}

/// Like [`prepare`] with an explicit target geometry and filter.
pub fn prepare_with(
    ood: &ImageSet,
    height: usize,
    width: usize,
    channels: usize,
    filter: Filter,
) -> Result<ImageSet> {
    ood.validate()?;
    let (h, w, c) = (ood.height, ood.width, ood.channels);
    let mut pixels = Vec::with_capacity(ood.len() * height * width * channels);
    for i in 0..ood.len() {
        let img = resize_u8(ood.image(i), h, w, c, height, width, filter);
        match (c, channels) {
            (a, b) if a == b => pixels.extend(img),
            (1, 3) => pixels.extend(img.iter().flat_map(|&g| [g, g, g])),
            (3, 1) => pixels.extend(rgb_to_grey_pil(&img)),
            (a, b) => {
                return Err(crate::DataError::Invalid(format!(
                    "{}: cannot convert {a}-channel images to {b} channels",
                    ood.name
                )))
            }
        }
    }
    Ok(ImageSet {
        name: format!("ood/{}", ood.name),
        height,
        width,
        channels,
        pixels,
        labels: ood.labels.clone(),
        class_names: ood.class_names.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_28_to_rgb_32() {
        let ood = ImageSet {
            name: "mnist/test".into(),
            height: 28,
            width: 28,
            channels: 1,
            pixels: vec![200; 2 * 28 * 28],
            labels: vec![3, 4],
            class_names: (0..10).map(|d| d.to_string()).collect(),
        };
        let like = ImageSet {
            name: "c".into(),
            height: 32,
            width: 32,
            channels: 3,
            pixels: vec![],
            labels: vec![],
            class_names: vec![],
        };
        let p = prepare(&ood, &like).unwrap();
        assert_eq!((p.len(), p.height, p.width, p.channels), (2, 32, 32, 3));
        assert!(p.pixels.iter().all(|&v| v == 200));
        assert_eq!(p.name, "ood/mnist/test");
        assert!(p.is_test_split());
    }
}
