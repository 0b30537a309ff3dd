//! The 19 corruption functions of `make_cifar_c.py` (CIFAR parameters), one Rust function each.
//!
//! Every function takes an RGB image (HWC `u8`), returns the corrupted image in the same layout,
//! and follows the Python line by line; comments give the Python expression being mirrored where
//! the correspondence is not obvious. The final `np.uint8(...)` of the script truncates, so float
//! results are clipped and truncated, not rounded ([`FloatImage::to_u8_clip_unit`]).
//!
//! Deliberate, documented deviations from the Python (besides the random streams, see [`crate::rng`]):
//! - `glass_blur` reproduces the script's NumPy view aliasing: `x[h, w], x[h', w'] = x[h', w'], x[h, w]`
//!   copies `x[h', w']` into `x[h, w]` and leaves `x[h', w']` unchanged (it is not a swap).
//! - `impulse_noise` uses current scikit-image `random_noise(mode='s&p')` semantics (each value is
//!   flipped with probability `amount`, half to 1 and half to 0).
//! - `motion_blur` / `snow` use ImageMagick's kernel re-implemented in [`crate::ops::motion_blur_u8`]
//!   (bit-identical to ImageMagick 6.9.11 Q16 for a given angle).
//! - `jpeg_compression` runs libjpeg's integer pipeline ([`crate::jpeg`], bit-identical to PIL's
//!   save + open for 32×32); only for sides that are not multiples of 16 does it fall back to the
//!   `jpeg-encoder` + `image` codecs, whose rounding differs from libjpeg's.
//! - `elastic_transform` warps with exact bilinear coordinates (OpenCV quantises them to 1/32 px).
//! - `spatter`'s OpenCV steps (Canny, distance transform, histogram equalisation) are
//!   re-implemented in [`crate::spatter`].
//!
//! Bit-identical to the Python on the same input (see `tests/golden.rs`): contrast, pixelate,
//! gaussian_blur, zoom_blur, defocus_blur, brightness, saturate, jpeg_compression, and motion_blur
//! for a fixed angle.

use crate::corruption::*;
use crate::error::CorruptError;
use crate::frost::FrostTextures;
use crate::ops::*;
use crate::plasma::plasma_fractal;
use crate::rng::{normal, poisson, randint, uniform};
use crate::spatter::{
    box_blur3, canny, distance_transform_l2_5, equalize_hist, filter2d_3x3_u8, Plane,
};
use rand::Rng;

/// External inputs some corruptions need.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    /// Frost textures; `frost` fails with [`CorruptError::MissingFrostTextures`] without them.
    pub frost: Option<FrostTextures>,
}

/// Applies `corruption` at `severity` (1..=5) to one RGB image of `height × width` (HWC bytes),
/// drawing randomness from `rng`. The recipe is defined for 32×32; other sizes run with the same
/// pixel-unit parameters (callers that generate datasets refuse them, see [`mod@crate::generate`]).
pub fn corrupt_image<R: Rng>(
    corruption: Corruption,
    severity: u8,
    pixels: &[u8],
    height: usize,
    width: usize,
    rng: &mut R,
    assets: &Assets,
) -> Result<Vec<u8>, CorruptError> {
    if !(1..=5).contains(&severity) {
        return Err(CorruptError::BadSeverity {
            value: severity.to_string(),
        });
    }
    if pixels.len() != height * width * 3 {
        return Err(CorruptError::InconsistentSource {
            source_name: "image".into(),
            detail: format!("{} bytes for a {height}×{width} RGB image", pixels.len()),
        });
    }
    let s = usize::from(severity - 1);
    let x = FloatImage::from_u8(height, width, 3, pixels, 255.0);
    Ok(match corruption {
        Corruption::GaussianNoise => map_values(&x, |v| v + normal(rng, 0.0, GAUSSIAN_NOISE[s])),
        Corruption::ShotNoise => {
            let c = SHOT_NOISE[s];
            map_values(&x, |v| poisson(rng, v * c) / c)
        }
        Corruption::ImpulseNoise => impulse_noise(&x, IMPULSE_NOISE[s], rng),
        Corruption::SpeckleNoise => map_values(&x, |v| v + v * normal(rng, 0.0, SPECKLE_NOISE[s])),
        Corruption::GaussianBlur => {
            gaussian_filter(&x, GAUSSIAN_BLUR[s], Border::Nearest, 4.0).to_u8_clip_unit()
        }
        Corruption::GlassBlur => glass_blur(&x, s, rng),
        Corruption::DefocusBlur => {
            let (radius, alias_blur) = DEFOCUS_BLUR[s];
            let (kernel, size) = disk(radius, alias_blur);
            filter2d_mirror(&x, &kernel, size).to_u8_clip_unit()
        }
        Corruption::MotionBlur => {
            let (radius, sigma) = MOTION_BLUR[s];
            let angle = uniform(rng, -45.0, 45.0);
            motion_blur_u8(pixels, height, width, 3, radius, sigma, angle)
        }
        Corruption::ZoomBlur => zoom_blur(&x, severity),
        Corruption::Snow => snow(&x, s, rng),
        Corruption::Frost => frost(pixels, height, width, s, rng, assets)?,
        Corruption::Fog => fog(&x, s, rng),
        Corruption::Brightness => map_hsv(&x, |h, sat, v| {
            (h, sat, (v + BRIGHTNESS[s]).clamp(0.0, 1.0))
        }),
        Corruption::Saturate => {
            let (scale, shift) = SATURATE[s];
            map_hsv(&x, |h, sat, v| {
                (h, (sat * scale + shift).clamp(0.0, 1.0), v)
            })
        }
        Corruption::Contrast => contrast(&x, CONTRAST[s]),
        Corruption::ElasticTransform => elastic_transform(&x, s, rng),
        Corruption::Pixelate => {
            let (small_h, small_w) = (pixelate_size(height, s), pixelate_size(width, s));
            let small = pil_box_resize(pixels, height, width, 3, small_h, small_w);
            pil_box_resize(&small, small_h, small_w, 3, height, width)
        }
        Corruption::JpegCompression => jpeg_round_trip(pixels, height, width, JPEG_QUALITY[s])?,
        Corruption::Spatter => spatter(&x, s, rng),
    })
}

/// Applies `f` to every value (in [0, 1] units), then clips and truncates.
fn map_values(x: &FloatImage, mut f: impl FnMut(f64) -> f64) -> Vec<u8> {
    let mut out = x.clone();
    out.data.iter_mut().for_each(|v| *v = f(*v));
    out.to_u8_clip_unit()
}

/// `sk.util.random_noise(x, mode='s&p', amount=c)`.
fn impulse_noise<R: Rng>(x: &FloatImage, amount: f64, rng: &mut R) -> Vec<u8> {
    map_values(x, |v| {
        let flipped = rng.gen::<f64>() < amount;
        let salted = rng.gen::<f64>() < 0.5;
        match (flipped, salted) {
            (true, true) => 1.0,
            (true, false) => 0.0,
            _ => v,
        }
    })
}

/// `glass_blur`: blur, truncate to `uint8`, copy each pixel from a random neighbour at offset
/// `randint(-d, d)` (i.e. in `{-d, …, d-1}`) while scanning bottom-right to top-left, blur again.
fn glass_blur<R: Rng>(x: &FloatImage, s: usize, rng: &mut R) -> Vec<u8> {
    let (sigma, max_delta, iterations) = GLASS_BLUR[s];
    let blurred = gaussian_filter(x, sigma, Border::Nearest, 4.0);
    // np.uint8(gaussian(...) * 255): a truncating cast without clipping (values stay in [0, 255]).
    let mut px: Vec<u8> = blurred.data.iter().map(|&v| (v * 255.0) as u8).collect();
    let (h, w) = (x.height as i64, x.width as i64);
    for _ in 0..iterations {
        // for h in range(32 - d, d, -1): for w in range(32 - d, d, -1)
        let mut row = h - max_delta;
        while row > max_delta {
            let mut col = w - max_delta;
            while col > max_delta {
                let dx = randint(rng, -max_delta, max_delta);
                let dy = randint(rng, -max_delta, max_delta);
                let (src_row, src_col) = ((row + dy) as usize, (col + dx) as usize);
                let dst = (row as usize * x.width + col as usize) * 3;
                let src = (src_row * x.width + src_col) * 3;
                for c in 0..3 {
                    px[dst + c] = px[src + c];
                }
                col -= 1;
            }
            row -= 1;
        }
    }
    let shuffled = FloatImage::from_u8(x.height, x.width, 3, &px, 255.0);
    gaussian_filter(&shuffled, sigma, Border::Nearest, 4.0).to_u8_clip_unit()
}

/// `disk(radius, alias_blur)`: the normalised aliased disk on a 17×17 grid (radius ≤ 8) smoothed by
/// `cv2.GaussianBlur(ksize=(3, 3), sigmaX=alias_blur)` with `BORDER_REFLECT_101`. Returns the
/// row-major kernel and its side.
pub(crate) fn disk(radius: f64, alias_blur: f64) -> (Vec<f64>, usize) {
    let (half, ksize) = if radius <= 8.0 {
        (8isize, 3usize)
    } else {
        (radius.ceil() as isize, 5)
    };
    let side = (2 * half + 1) as usize;
    let inside = |y: isize, x: isize| (x * x + y * y) as f64 <= radius * radius;
    // The recipe builds the disk in float32 and OpenCV blurs it in float32, so the kernel that
    // filter2D finally applies is float32-rounded; we reproduce that rounding.
    let count = (-half..=half)
        .flat_map(|y| (-half..=half).map(move |x| inside(y, x)))
        .filter(|&b| b)
        .count();
    let weight = f64::from(1.0f32 / count as f32);
    let aliased: Vec<f64> = (-half..=half)
        .flat_map(|y| (-half..=half).map(move |x| if inside(y, x) { weight } else { 0.0 }))
        .collect();
    // cv2.getGaussianKernel(ksize, sigma, CV_32F) for sigma > 0: float32 taps, normalised.
    let r = (ksize / 2) as isize;
    let scale2 = -0.5 / (alias_blur * alias_blur);
    let taps: Vec<f32> = (-r..=r)
        .map(|i| (scale2 * (i * i) as f64).exp() as f32)
        .collect();
    let inv_sum = 1.0 / taps.iter().map(|&t| f64::from(t)).sum::<f64>();
    let g: Vec<f64> = taps
        .iter()
        .map(|&t| f64::from((f64::from(t) * inv_sum) as f32))
        .collect();
    // Separable blur, rows then columns, each pass rounded to float32.
    let round32 = |img: FloatImage| FloatImage {
        data: img.data.iter().map(|&v| f64::from(v as f32)).collect(),
        ..img
    };
    let plane = FloatImage {
        height: side,
        width: side,
        channels: 1,
        data: aliased,
    };
    let mut row_kernel = vec![0.0; ksize * ksize];
    let mut col_kernel = vec![0.0; ksize * ksize];
    for (i, &gi) in g.iter().enumerate() {
        row_kernel[r as usize * ksize + i] = gi;
        col_kernel[i * ksize + r as usize] = gi;
    }
    let rows = round32(filter2d_mirror(&plane, &row_kernel, ksize));
    (
        round32(filter2d_mirror(&rows, &col_kernel, ksize)).data,
        side,
    )
}

/// `zoom_blur`: mean of the image and its clipped zooms.
fn zoom_blur(x: &FloatImage, severity: u8) -> Vec<u8> {
    // The recipe runs this one in float32: `(np.array(x) / 255.).astype(np.float32)`, float32
    // zooms (SciPy interpolates in double and stores float32) and a float32 accumulator.
    let f32_round = |v: f64| f64::from(v as f32);
    let mut x32 = x.clone();
    x32.data.iter_mut().for_each(|v| *v = f32_round(*v));
    let factors = zoom_factors(severity);
    let mut acc = vec![0.0f32; x32.data.len()];
    for &z in &factors {
        let zoomed = clipped_zoom(&x32, z);
        acc.iter_mut()
            .zip(&zoomed.data)
            .for_each(|(a, &b)| *a += b as f32);
    }
    let n = factors.len() as f32 + 1.0;
    x32.data
        .iter()
        .zip(&acc)
        .map(|(&v, &a)| (((v as f32 + a) / n).clamp(0.0, 1.0) * 255.0) as u8)
        .collect()
}

/// `snow`: thresholded, zoomed, motion-blurred noise layer added twice (once rotated by 180°) to a
/// partially whitened image.
fn snow<R: Rng>(x: &FloatImage, s: usize, rng: &mut R) -> Vec<u8> {
    let (loc, scale, zoom, threshold, radius, sigma, weight) = SNOW[s];
    let (h, w) = (x.height, x.width);
    let mut layer = FloatImage::zeros(h, w, 1);
    layer
        .data
        .iter_mut()
        .for_each(|v| *v = normal(rng, loc, scale));
    let mut layer = clipped_zoom(&layer, zoom);
    layer.data.iter_mut().for_each(|v| {
        if *v < threshold {
            *v = 0.0
        }
    });
    // PIL 'L' image of (clip(layer, 0, 1) * 255).astype(uint8), motion-blurred by ImageMagick.
    let layer_u8 = layer.to_u8_clip_unit();
    let angle = uniform(rng, -135.0, -45.0);
    let blurred = motion_blur_u8(&layer_u8, h, w, 1, radius, sigma, angle);
    let mut out = x.clone();
    for y in 0..h {
        for xx in 0..w {
            let gray = 0.299 * x.at(y, xx, 0) + 0.587 * x.at(y, xx, 1) + 0.114 * x.at(y, xx, 2);
            let flake = f64::from(blurred[y * w + xx]) / 255.0;
            let flake_rot = f64::from(blurred[(h - 1 - y) * w + (w - 1 - xx)]) / 255.0;
            for c in 0..3 {
                let v = x.at(y, xx, c);
                let whitened = weight * v + (1.0 - weight) * v.max(gray * 1.5 + 0.5);
                *out.at_mut(y, xx, c) = whitened + flake + flake_rot;
            }
        }
    }
    out.to_u8_clip_unit()
}

/// `frost`: `clip(c0 * x + c1 * crop, 0, 255)` with a random crop of a random texture.
fn frost<R: Rng>(
    pixels: &[u8],
    h: usize,
    w: usize,
    s: usize,
    rng: &mut R,
    assets: &Assets,
) -> Result<Vec<u8>, CorruptError> {
    let textures = assets
        .frost
        .as_ref()
        .ok_or(CorruptError::MissingFrostTextures)?;
    let (image_weight, frost_weight) = FROST[s];
    let idx = randint(rng, 0, textures.textures.len() as i64) as usize;
    let tex = &textures.textures[idx];
    if tex.height <= h || tex.width <= w {
        return Err(CorruptError::FrostTexture {
            path: textures.dir.clone(),
            detail: format!("texture {} is smaller than the {h}×{w} image", idx + 1),
        });
    }
    let y0 = randint(rng, 0, (tex.height - h) as i64) as usize;
    let x0 = randint(rng, 0, (tex.width - w) as i64) as usize;
    let mut out = vec![0u8; pixels.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let v = image_weight * f64::from(pixels[(y * w + x) * 3 + c])
                    + frost_weight * f64::from(tex.pixels[((y0 + y) * tex.width + x0 + x) * 3 + c]);
                out[(y * w + x) * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(out)
}

/// `fog`: add a plasma fractal (same for all channels) and rescale by `max / (max + c0)`.
fn fog<R: Rng>(x: &FloatImage, s: usize, rng: &mut R) -> Vec<u8> {
    let (strength, decay) = FOG[s];
    let max_val = x.data.iter().copied().fold(0.0, f64::max);
    // The recipe's map is 32×32 and cropped to the image; larger images get a larger map.
    let map_size = x.height.max(x.width).next_power_of_two().max(32);
    let plasma = plasma_fractal(rng, map_size, decay);
    let mut out = x.clone();
    for y in 0..x.height {
        for xx in 0..x.width {
            for c in 0..3 {
                let v = x.at(y, xx, c) + strength * plasma[y * map_size + xx];
                *out.at_mut(y, xx, c) = v * max_val / (max_val + strength);
            }
        }
    }
    out.to_u8_clip_unit()
}

/// Per-pixel HSV edit (`rgb2hsv` → `f` → `hsv2rgb`), then clip and truncate.
fn map_hsv(x: &FloatImage, f: impl Fn(f64, f64, f64) -> (f64, f64, f64)) -> Vec<u8> {
    let mut out = x.clone();
    for px in out.data.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
        let (h, s, v) = f(h, s, v);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        px.copy_from_slice(&[r, g, b]);
    }
    out.to_u8_clip_unit()
}

/// `contrast`: `(x - mean) * c + mean` with the per-channel mean over the image.
fn contrast(x: &FloatImage, c: f64) -> Vec<u8> {
    let n = (x.height * x.width) as f64;
    let mut means = [0.0; 3];
    for px in x.data.chunks_exact(3) {
        for ch in 0..3 {
            means[ch] += px[ch];
        }
    }
    means.iter_mut().for_each(|m| *m /= n);
    let mut out = x.clone();
    for px in out.data.chunks_exact_mut(3) {
        for ch in 0..3 {
            px[ch] = (px[ch] - means[ch]) * c + means[ch];
        }
    }
    out.to_u8_clip_unit()
}

/// `elastic_transform`: random affine warp of three control points, then a displacement field of
/// Gaussian-smoothed uniform noise (`mode='reflect'`, `truncate=3`) scaled by alpha, sampled with
/// `map_coordinates(order=1, mode='reflect')`.
fn elastic_transform<R: Rng>(x: &FloatImage, s: usize, rng: &mut R) -> Vec<u8> {
    let (alpha, sigma, max_shift) = elastic_params(s);
    let (h, w) = (x.height, x.width);
    // center_square = float32(shape_size) // 2; square_size = min(shape_size) // 3.
    let (cy, cx) = ((h / 2) as f64, (w / 2) as f64);
    let sq = (h.min(w) / 3) as f64;
    let pts1 = [[cy + sq, cx + sq], [cy + sq, cx - sq], [cy - sq, cx - sq]];
    let mut pts2 = pts1;
    for p in pts2.iter_mut() {
        for v in p.iter_mut() {
            *v += uniform(rng, -max_shift, max_shift);
        }
    }
    let warped = match affine_from_points(pts1, pts2) {
        Some(m) => warp_affine_mirror(x, m),
        None => x.clone(),
    };
    let field = |rng: &mut R| {
        let mut noise = FloatImage::zeros(h, w, 1);
        noise
            .data
            .iter_mut()
            .for_each(|v| *v = uniform(rng, -1.0, 1.0));
        let mut smooth = gaussian_filter(&noise, sigma, Border::Reflect, 3.0);
        smooth.data.iter_mut().for_each(|v| *v *= alpha);
        smooth
    };
    let dx = field(rng);
    let dy = field(rng);
    let mut out = FloatImage::zeros(h, w, 3);
    for y in 0..h {
        for xx in 0..w {
            let sy = y as f64 + dy.at(y, xx, 0);
            let sx = xx as f64 + dx.at(y, xx, 0);
            for c in 0..3 {
                *out.at_mut(y, xx, c) = sample_reflect(&warped, sy, sx, c);
            }
        }
    }
    out.to_u8_clip_unit()
}

/// `jpeg_compression`: PIL `save(format='JPEG', quality=q)` (4:2:0) and decode. Sides that are
/// multiples of 16 (CIFAR's 32×32) use the exact libjpeg pipeline of [`crate::jpeg`]; other sizes
/// use real codecs (`jpeg-encoder` with 4:2:0, decoded by `image`).
fn jpeg_round_trip(
    pixels: &[u8],
    h: usize,
    w: usize,
    quality: u8,
) -> Result<Vec<u8>, CorruptError> {
    if h % 16 == 0 && w % 16 == 0 {
        return Ok(crate::jpeg::libjpeg_round_trip(pixels, h, w, quality));
    }
    let mut bytes = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(pixels, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| CorruptError::Jpeg(e.to_string()))?;
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .map_err(|e| CorruptError::Jpeg(e.to_string()))?
        .to_rgb8();
    Ok(decoded.into_raw())
}

/// `spatter`: a thresholded blurred noise layer becomes water (pale turquoise, shaded by an
/// edge-distance map) for severities 1–3 or mud (brown, opaque) for 4–5.
fn spatter<R: Rng>(x: &FloatImage, s: usize, rng: &mut R) -> Vec<u8> {
    let (loc, scale, sigma, threshold, intensity, mode) = SPATTER[s];
    let (h, w) = (x.height, x.width);
    let mut liquid = FloatImage::zeros(h, w, 1);
    liquid
        .data
        .iter_mut()
        .for_each(|v| *v = normal(rng, loc, scale));
    let mut liquid = gaussian_filter(&liquid, sigma, Border::Nearest, 4.0);
    liquid.data.iter_mut().for_each(|v| {
        if *v < threshold {
            *v = 0.0
        }
    });
    let mut out = x.clone();
    if mode == 0 {
        // (liquid_layer * 255).astype(np.uint8): truncating, wrapping cast.
        let liquid_u8: Vec<u8> = liquid
            .data
            .iter()
            .map(|&v| (v * 255.0) as i64 as u8)
            .collect();
        let plane = Plane {
            height: h,
            width: w,
            data: liquid_u8.iter().map(|&v| f64::from(v)).collect(),
        };
        let edges = canny(&plane, 50.0, 150.0);
        let not_edges: Vec<u8> = edges.iter().map(|&e| 255 - e).collect();
        // distanceTransform, threshold(20, THRESH_TRUNC), blur 3×3, astype(uint8).
        let dist = distance_transform_l2_5(&not_edges, h, w);
        let dist = Plane {
            height: h,
            width: w,
            data: dist.into_iter().map(|d| d.min(20.0)).collect(),
        };
        let dist_u8: Vec<u8> = box_blur3(&dist).data.iter().map(|&v| v as u8).collect();
        let dist_u8 = equalize_hist(&dist_u8);
        let kernel = [[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]];
        let dist_u8 = filter2d_3x3_u8(&dist_u8, h, w, kernel);
        // cv2.blur on uint8 rounds back to uint8.
        let dist_plane = Plane {
            height: h,
            width: w,
            data: dist_u8.iter().map(|&v| f64::from(v)).collect(),
        };
        let shade: Vec<f64> = box_blur3(&dist_plane)
            .data
            .iter()
            .map(|&v| v.round_ties_even().clamp(0.0, 255.0))
            .collect();
        let mut m: Vec<f64> = liquid_u8
            .iter()
            .zip(&shade)
            .map(|(&l, &d)| f64::from(l) * d)
            .collect();
        let max = m.iter().copied().fold(0.0, f64::max);
        // NumPy would divide by zero (NaN → 0 after the uint8 cast); an all-zero mask adds nothing.
        m.iter_mut()
            .for_each(|v| *v = if max > 0.0 { *v / max * intensity } else { 0.0 });
        const WATER: [f64; 3] = [175.0 / 255.0, 238.0 / 255.0, 238.0 / 255.0];
        for (px, &mv) in out.data.chunks_exact_mut(3).zip(&m) {
            for c in 0..3 {
                px[c] += mv * WATER[c];
            }
        }
    } else {
        let mut mask = FloatImage::zeros(h, w, 1);
        for (mv, &l) in mask.data.iter_mut().zip(&liquid.data) {
            *mv = if l > threshold { 1.0 } else { 0.0 };
        }
        let mut mask = gaussian_filter(&mask, intensity, Border::Nearest, 4.0);
        mask.data.iter_mut().for_each(|v| {
            if *v < 0.8 {
                *v = 0.0
            }
        });
        const MUD: [f64; 3] = [63.0 / 255.0, 42.0 / 255.0, 20.0 / 255.0];
        for (px, &mv) in out.data.chunks_exact_mut(3).zip(&mask.data) {
            for c in 0..3 {
                px[c] = px[c] * (1.0 - mv) + MUD[c] * mv;
            }
        }
    }
    out.to_u8_clip_unit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_kernels_are_normalised_and_grow_with_radius() {
        for &(r, a) in &DEFOCUS_BLUR {
            let (k, side) = disk(r, a);
            assert_eq!(side, 17);
            let sum: f64 = k.iter().sum();
            // float32 kernel: normalised to float32 precision.
            assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        }
        // Centre weight shrinks as the disk grows.
        let centre = |r, a| disk(r, a).0[8 * 17 + 8];
        assert!(centre(0.3, 0.4) > centre(1.0, 0.2) && centre(1.0, 0.2) > centre(1.5, 0.1));
    }
}
