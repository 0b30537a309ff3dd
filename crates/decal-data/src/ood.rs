//! Any dataset as an out-of-distribution set for another: its images are brought to the in-distribution
//! geometry, and are then fed through the **in-distribution** transform, so they are normalised with the
//! in-distribution constants as the seed does (seed spec §4.2, §10.5). Labels are kept but belong to the
//! OOD set's own classes; OOD metrics only use the "is OOD" flag.
//!
//! [`prepare`] is **the** OOD adaptation of decal (one owner, issue #11; `decal run`'s units call it). The
//! seed only ever paired 32×32 RGB sets, so the spec fixes no conversion; decal follows what a torchvision
//! pipeline does with PIL images: the channel conversion happens when the image is loaded (`Image.convert`,
//! as `ImageFolder`'s loader and decal's own ImageFolder reader do), then `Resize` runs on the converted
//! image. So the order is **channels first, then size**:
//! - channels: grey → RGB by replication (`convert("RGB")`), RGB → grey by PIL's ITU-R 601-2 luma
//!   (`convert("L")`, [`crate::imagefolder::rgb_to_grey_pil`]; not the channel mean); other channel
//!   counts are an error naming the set;
//! - size: Pillow's bilinear filter with antialias ([`Filter::BilinearAntialias`]), torchvision's default
//!   `Resize` on PIL images.
//!
//! Out of the box: Tiny ImageNet (64×64) → 32×32 against CIFAR-10; MNIST against Fashion-MNIST (same
//! geometry, nothing to do); MNIST/Fashion-MNIST (28×28 grey) against CIFAR (→ 32×32 RGB); CIFAR (RGB)
//! against MNIST-family models (→ 28×28 grey).

use crate::error::Result;
use crate::imagefolder::rgb_to_grey_pil;
use crate::resize::{resize_u8, Filter};
use crate::ImageSet;

/// Converts and resizes `ood` to the height, width and channels of `like` (the in-distribution test set),
/// with [`Filter::BilinearAntialias`]: see the module documentation for the exact order and conversions.
/// The result is named `ood/<name>`.
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
        // 1. Channels, as PIL's `Image.convert` when the image is loaded.
        let converted: Vec<u8> = match (c, channels) {
            (a, b) if a == b => ood.image(i).to_vec(),
            (1, 3) => ood.image(i).iter().flat_map(|&g| [g, g, g]).collect(),
            (3, 1) => rgb_to_grey_pil(ood.image(i)),
            (a, b) => {
                return Err(crate::DataError::Invalid(format!(
                    "{}: cannot convert {a}-channel images to {b} channels",
                    ood.name
                )))
            }
        };
        // 2. Size, on the converted image.
        pixels.extend(resize_u8(&converted, h, w, channels, height, width, filter));
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

    fn rgb_set(h: usize, w: usize, n: usize) -> ImageSet {
        ImageSet {
            name: "cifar10/test".into(),
            height: h,
            width: w,
            channels: 3,
            // Strongly coloured, varying pixels: luma and channel mean differ, and so do the two orders.
            pixels: (0..n * h * w * 3)
                .map(|v| ((v * 97 + (v % 3) * 85) % 256) as u8)
                .collect(),
            labels: (0..n as u32).collect(),
            class_names: (0..10).map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn rgb_to_grey_is_pil_luma_then_resize() {
        let ood = rgb_set(6, 6, 2);
        let p = prepare_with(&ood, 4, 4, 1, Filter::BilinearAntialias).unwrap();
        assert_eq!((p.len(), p.height, p.width, p.channels), (2, 4, 4, 1));
        for i in 0..2 {
            let want = resize_u8(
                &rgb_to_grey_pil(ood.image(i)),
                6,
                6,
                1,
                4,
                4,
                Filter::BilinearAntialias,
            );
            assert_eq!(p.image(i), &want[..], "image {i}");
        }
        // The other order (resize the RGB image, then convert) and the channel mean give other pixels: the
        // test above distinguishes the owner's definition from the two that were removed.
        let resized_first = rgb_to_grey_pil(&resize_u8(
            ood.image(0),
            6,
            6,
            3,
            4,
            4,
            Filter::BilinearAntialias,
        ));
        assert_ne!(p.image(0), &resized_first[..]);
        let mean_grey: Vec<u8> = ood
            .image(0)
            .chunks(3)
            .map(|px| ((px[0] as f64 + px[1] as f64 + px[2] as f64) / 3.0).round() as u8)
            .collect();
        let mean_then_resize = resize_u8(&mean_grey, 6, 6, 1, 4, 4, Filter::BilinearAntialias);
        assert_ne!(p.image(0), &mean_then_resize[..]);
        // Same size: conversion only (PIL luma, pixel by pixel).
        let same = prepare_with(&ood, 6, 6, 1, Filter::BilinearAntialias).unwrap();
        assert_eq!(same.image(1), &rgb_to_grey_pil(ood.image(1))[..]);
    }

    #[test]
    fn grey_is_replicated_and_unknown_channel_counts_are_errors() {
        let ood = ImageSet {
            name: "mnist/test".into(),
            height: 3,
            width: 3,
            channels: 1,
            pixels: (0..9u8).map(|v| v * 25).collect(),
            labels: vec![1],
            class_names: (0..10).map(|d| d.to_string()).collect(),
        };
        let p = prepare_with(&ood, 3, 3, 3, Filter::BilinearAntialias).unwrap();
        let want: Vec<u8> = ood.pixels.iter().flat_map(|&g| [g, g, g]).collect();
        assert_eq!(p.pixels, want);
        let err = prepare_with(&ood, 3, 3, 2, Filter::BilinearAntialias)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mnist/test") && err.contains("1-channel"),
            "{err}"
        );
    }
}
