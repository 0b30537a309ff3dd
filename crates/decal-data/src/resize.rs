//! Image resizing with the exact semantics of the reference implementations it replaces.
//!
//! * [`Filter::Nearest`], [`Filter::Bilinear`], [`Filter::Bicubic`], [`Filter::Area`]: PyTorch's
//!   `F.interpolate(mode=…, align_corners=False, antialias=False)` (`area` = `adaptive_avg_pool2d`).
//!   Bicubic uses PyTorch's `A = −0.75` and clamps source indices to the border. This is what the seed's
//!   ViT path uses (`Resize((224,224), BICUBIC)` applied to a tensor, upsampling 64→224, seed spec §4.2).
//! * [`Filter::BilinearAntialias`], [`Filter::BicubicAntialias`]: Pillow's `Image.resize` (the default of
//!   torchvision's `Resize` on PIL images, e.g. Tiny ImageNet 64→32 for OOD evaluation), with Pillow's
//!   support scaling when downsampling, Pillow's bicubic `a = −0.5`, and — on 8-bit images — Pillow's
//!   22-bit fixed-point coefficients, horizontal pass first and rounding to 8 bits between the passes.
//!
//! Every filter is expressed as a table of `(source index, weight)` pairs per output coordinate and applied
//! separably (rows, then columns).

use serde::{Deserialize, Serialize};

/// A resampling filter; see the module documentation for the exact reference of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    /// PyTorch `nearest`: `src = min(floor(dst · in/out), in − 1)`.
    Nearest,
    /// PyTorch `bilinear`, `align_corners=False`, no antialias.
    Bilinear,
    /// PyTorch `bicubic` (A = −0.75), `align_corners=False`, no antialias.
    Bicubic,
    /// PyTorch `area` (adaptive average pooling).
    Area,
    /// Pillow `BILINEAR` (triangle filter, widened by the scale when downsampling).
    BilinearAntialias,
    /// Pillow `BICUBIC` (a = −0.5, widened by the scale when downsampling).
    BicubicAntialias,
}

impl Filter {
    /// Parses `nearest | bilinear | bicubic | area | bilinear-antialias | bicubic-antialias`.
    pub fn parse(s: &str) -> Option<Filter> {
        Some(match s {
            "nearest" => Filter::Nearest,
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            "area" => Filter::Area,
            "bilinear-antialias" | "pil-bilinear" => Filter::BilinearAntialias,
            "bicubic-antialias" | "pil-bicubic" => Filter::BicubicAntialias,
            _ => return None,
        })
    }

    fn is_pillow(self) -> bool {
        matches!(self, Filter::BilinearAntialias | Filter::BicubicAntialias)
    }
}

/// For one output coordinate: `(first source index, weights for consecutive sources)`.
type Taps = Vec<(usize, Vec<f64>)>;

/// Weight table of one axis: `out` coordinates sampled from `input` coordinates.
fn taps(input: usize, out: usize, filter: Filter) -> Taps {
    let scale = input as f64 / out as f64;
    let last = input as i64 - 1;
    // Converts (index, weight) pairs with possibly out-of-range indices into a clamped contiguous run.
    let clamp_run = |pairs: &[(i64, f64)]| -> (usize, Vec<f64>) {
        let lo = pairs.iter().map(|p| p.0.clamp(0, last)).min().unwrap_or(0);
        let hi = pairs.iter().map(|p| p.0.clamp(0, last)).max().unwrap_or(0);
        let mut w = vec![0.0; (hi - lo + 1) as usize];
        for &(i, wt) in pairs {
            w[(i.clamp(0, last) - lo) as usize] += wt;
        }
        (lo as usize, w)
    };
    (0..out)
        .map(|o| match filter {
            Filter::Nearest => {
                // PyTorch computes the scale in float32 and floors `dst * scale`.
                let s = (input as f32) / (out as f32);
                let src = ((o as f32 * s).floor() as i64).min(last);
                (src as usize, vec![1.0])
            }
            Filter::Bilinear => {
                let real = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
                let i0 = real.floor() as i64;
                let l1 = real - i0 as f64;
                let i1 = if i0 < last { i0 + 1 } else { i0 };
                clamp_run(&[(i0, 1.0 - l1), (i1, l1)])
            }
            Filter::Bicubic => {
                const A: f64 = -0.75;
                let c1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
                let c2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
                let real = scale * (o as f64 + 0.5) - 0.5;
                let i = real.floor() as i64;
                let t = real - i as f64;
                clamp_run(&[
                    (i - 1, c2(t + 1.0)),
                    (i, c1(t)),
                    (i + 1, c1(1.0 - t)),
                    (i + 2, c2(2.0 - t)),
                ])
            }
            Filter::Area => {
                let start = (o * input) / out;
                let end = ((o + 1) * input).div_ceil(out);
                let n = end - start;
                (start, vec![1.0 / n as f64; n])
            }
            Filter::BilinearAntialias | Filter::BicubicAntialias => {
                pillow_taps(input, scale, o, filter)
            }
        })
        .collect()
}

/// Pillow's `precompute_coeffs` for one output coordinate.
fn pillow_taps(input: usize, scale: f64, o: usize, filter: Filter) -> (usize, Vec<f64>) {
    let (support, f): (f64, fn(f64) -> f64) = match filter {
        Filter::BilinearAntialias => (1.0, |x: f64| {
            let x = x.abs();
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        }),
        _ => (2.0, |x: f64| {
            const A: f64 = -0.5;
            let x = x.abs();
            if x < 1.0 {
                ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * A
            } else {
                0.0
            }
        }),
    };
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let center = (o as f64 + 0.5) * scale;
    let ss = 1.0 / filterscale;
    // C's `(int)` truncates toward zero.
    let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
    let xmax = ((center + support + 0.5).trunc() as i64).min(input as i64) as usize;
    let mut w: Vec<f64> = (xmin..xmax.max(xmin))
        .map(|x| f((x as f64 - center + 0.5) * ss))
        .collect();
    let total: f64 = w.iter().sum();
    if total != 0.0 {
        w.iter_mut().for_each(|v| *v /= total);
    }
    (xmin, w)
}

/// Resizes one `[h, w]` plane of `f32` values (no rounding); used for normalised tensors.
pub fn resize_plane_f32(
    src: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    filter: Filter,
) -> Vec<f32> {
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    let tx = taps(w, ow, filter);
    let ty = taps(h, oh, filter);
    let mut tmp = vec![0f32; h * ow];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for (x, (start, wts)) in tx.iter().enumerate() {
            let mut acc = 0f64;
            for (k, wt) in wts.iter().enumerate() {
                acc += row[start + k] as f64 * wt;
            }
            tmp[y * ow + x] = acc as f32;
        }
    }
    let mut out = vec![0f32; oh * ow];
    for (y, (start, wts)) in ty.iter().enumerate() {
        for x in 0..ow {
            let mut acc = 0f64;
            for (k, wt) in wts.iter().enumerate() {
                acc += tmp[(start + k) * ow + x] as f64 * wt;
            }
            out[y * ow + x] = acc as f32;
        }
    }
    out
}

/// Resizes an HWC 8-bit image with `c` channels to `oh × ow`.
///
/// Pillow filters reproduce Pillow's 8-bit arithmetic exactly (fixed point, rounding between passes, and a
/// pass skipped when its axis keeps its size); the PyTorch filters compute in `f64` and round half away
/// from zero, clamped to 0..=255 (PyTorch's own uint8 kernels may differ by one level in rare ties).
pub fn resize_u8(
    src: &[u8],
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    filter: Filter,
) -> Vec<u8> {
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    if filter.is_pillow() {
        return resize_u8_pillow(src, h, w, c, oh, ow, filter);
    }
    let tx = taps(w, ow, filter);
    let ty = taps(h, oh, filter);
    let mut tmp = vec![0f64; h * ow * c];
    for y in 0..h {
        for (x, (start, wts)) in tx.iter().enumerate() {
            for ch in 0..c {
                let mut acc = 0f64;
                for (k, wt) in wts.iter().enumerate() {
                    acc += src[(y * w + start + k) * c + ch] as f64 * wt;
                }
                tmp[(y * ow + x) * c + ch] = acc;
            }
        }
    }
    let mut out = vec![0u8; oh * ow * c];
    for (y, (start, wts)) in ty.iter().enumerate() {
        for x in 0..ow {
            for ch in 0..c {
                let mut acc = 0f64;
                for (k, wt) in wts.iter().enumerate() {
                    acc += tmp[((start + k) * ow + x) * c + ch] * wt;
                }
                out[(y * ow + x) * c + ch] = acc.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn fixed_point(wts: &[f64]) -> Vec<i64> {
    wts.iter()
        .map(|&k| {
            let v = k * (1i64 << PRECISION_BITS) as f64;
            if k < 0.0 {
                (v - 0.5).trunc() as i64
            } else {
                (v + 0.5).trunc() as i64
            }
        })
        .collect()
}

fn clip8(ss: i64) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

fn resize_u8_pillow(
    src: &[u8],
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    filter: Filter,
) -> Vec<u8> {
    let mut cur = src.to_vec();
    let mut cw = w;
    if ow != w {
        let tx: Vec<(usize, Vec<i64>)> = taps(w, ow, filter)
            .into_iter()
            .map(|(s, wts)| (s, fixed_point(&wts)))
            .collect();
        let mut out = vec![0u8; h * ow * c];
        for y in 0..h {
            for (x, (start, k)) in tx.iter().enumerate() {
                for ch in 0..c {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, kk) in k.iter().enumerate() {
                        ss += cur[(y * cw + start + i) * c + ch] as i64 * kk;
                    }
                    out[(y * ow + x) * c + ch] = clip8(ss);
                }
            }
        }
        cur = out;
        cw = ow;
    }
    if oh != h {
        let ty: Vec<(usize, Vec<i64>)> = taps(h, oh, filter)
            .into_iter()
            .map(|(s, wts)| (s, fixed_point(&wts)))
            .collect();
        let mut out = vec![0u8; oh * cw * c];
        for (y, (start, k)) in ty.iter().enumerate() {
            for x in 0..cw {
                for ch in 0..c {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, kk) in k.iter().enumerate() {
                        ss += cur[((start + i) * cw + x) * c + ch] as i64 * kk;
                    }
                    out[(y * cw + x) * c + ch] = clip8(ss);
                }
            }
        }
        cur = out;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_preserves_a_constant_image() {
        for f in [
            Filter::Nearest,
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Area,
            Filter::BilinearAntialias,
            Filter::BicubicAntialias,
        ] {
            for (oh, ow) in [(3, 5), (16, 16), (7, 2)] {
                let out = resize_u8(&[77u8; 8 * 8 * 3], 8, 8, 3, oh, ow, f);
                assert!(out.iter().all(|&v| v == 77), "{f:?} {oh}x{ow}");
            }
        }
    }

    #[test]
    fn downsample_by_two_weights() {
        // Area and Pillow bilinear at scale 2: area averages pairs; Pillow uses (1,3,3,1)/8.
        let row: Vec<u8> = vec![0, 8, 16, 24, 32, 40, 48, 56];
        let area = resize_u8(&row, 1, 8, 1, 1, 4, Filter::Area);
        assert_eq!(area, vec![4, 20, 36, 52]);
        let pil = resize_u8(&row, 1, 8, 1, 1, 4, Filter::BilinearAntialias);
        // Output 1: (8·1 + 16·3 + 24·3 + 32·1)/8 = 20; border output 0: (0·3 + 8·3 + 16·1)/7 = 5.71 → 6.
        assert_eq!(pil[1], 20);
        assert_eq!(pil[0], 6);
    }
}
