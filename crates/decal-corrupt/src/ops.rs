//! Image-processing building blocks that stand in for the library calls of `make_cifar_c.py`.
//!
//! Each function names the library routine it re-implements and the conventions it keeps
//! (coordinate mapping, border mode, rounding). Images are HWC row-major; float images hold values
//! in the recipe's units (usually [0, 1]).

/// A float image, `height × width × channels`, HWC row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels per pixel.
    pub channels: usize,
    /// `height * width * channels` values.
    pub data: Vec<f64>,
}

impl FloatImage {
    /// All-zero image.
    pub fn zeros(height: usize, width: usize, channels: usize) -> Self {
        FloatImage {
            height,
            width,
            channels,
            data: vec![0.0; height * width * channels],
        }
    }

    /// `pixels[i] as f64 / divisor`, e.g. `divisor = 255` for `np.array(x) / 255.` (a true division:
    /// multiplying by `1/255` differs in the last bit and flips truncations downstream).
    pub fn from_u8(
        height: usize,
        width: usize,
        channels: usize,
        pixels: &[u8],
        divisor: f64,
    ) -> Self {
        debug_assert_eq!(pixels.len(), height * width * channels);
        FloatImage {
            height,
            width,
            channels,
            data: pixels.iter().map(|&p| f64::from(p) / divisor).collect(),
        }
    }

    /// Value at row `y`, column `x`, channel `c`.
    #[inline]
    pub fn at(&self, y: usize, x: usize, c: usize) -> f64 {
        self.data[(y * self.width + x) * self.channels + c]
    }

    /// Mutable value at row `y`, column `x`, channel `c`.
    #[inline]
    pub fn at_mut(&mut self, y: usize, x: usize, c: usize) -> &mut f64 {
        &mut self.data[(y * self.width + x) * self.channels + c]
    }

    /// `np.uint8(np.clip(x, 0, 1) * 255)`: clip, scale, then truncate toward zero like NumPy's cast.
    pub fn to_u8_clip_unit(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0) as u8)
            .collect()
    }

    /// `np.uint8(np.clip(x, 0, 255))` for images already in [0, 255] units (truncating cast).
    pub fn to_u8_clip_255(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| v.clamp(0.0, 255.0) as u8)
            .collect()
    }
}

/// How an index outside `0..n` is mapped back inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Repeat the edge value (`scipy` `nearest`, OpenCV `BORDER_REPLICATE`, ImageMagick `edge`).
    Nearest,
    /// Half-sample symmetric, `d c b a | a b c d` (`scipy` `reflect`).
    Reflect,
    /// Whole-sample symmetric, `d c b | a b c d` (`scipy` `mirror`, OpenCV `BORDER_REFLECT_101`).
    Mirror,
}

/// Maps index `i` into `0..n` under `border`.
#[inline]
pub fn border_index(i: isize, n: usize, border: Border) -> usize {
    let n_i = n as isize;
    if (0..n_i).contains(&i) {
        return i as usize;
    }
    match border {
        Border::Nearest => i.clamp(0, n_i - 1) as usize,
        Border::Reflect => {
            let period = 2 * n_i;
            let m = i.rem_euclid(period);
            (if m >= n_i { period - 1 - m } else { m }) as usize
        }
        Border::Mirror => {
            if n_i == 1 {
                return 0;
            }
            let period = 2 * n_i - 2;
            let m = i.rem_euclid(period);
            (if m >= n_i { period - m } else { m }) as usize
        }
    }
}

/// The 1-D kernel of `scipy.ndimage.gaussian_filter1d`: radius `int(truncate * sigma + 0.5)`,
/// weights `exp(-x² / (2 sigma²))` normalised to sum 1.
pub fn gaussian_kernel1d(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as isize;
    // Same operation order as SciPy: `exp(-0.5 / sigma2 * x ** 2)`, then `/ phi_x.sum()`.
    let factor = -0.5 / (sigma * sigma);
    let weights: Vec<f64> = (-radius..=radius)
        .map(|x| (factor * (x * x) as f64).exp())
        .collect();
    let sum = numpy_sum(&weights);
    weights.into_iter().map(|w| w / sum).collect()
}

/// NumPy's float64 `sum` (pairwise summation with 8 accumulators for up to 128 values), so that
/// normalised kernels are bit-identical to the reference.
pub fn numpy_sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        return values.iter().fold(0.0, |acc, &v| acc + v);
    }
    if n > 128 {
        let half = (n / 2) / 8 * 8;
        return numpy_sum(&values[..half]) + numpy_sum(&values[half..]);
    }
    let mut r = [0.0f64; 8];
    r.copy_from_slice(&values[..8]);
    let mut i = 8;
    while i < n - n % 8 {
        for j in 0..8 {
            r[j] += values[i + j];
        }
        i += 8;
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &v in &values[i..] {
        res += v;
    }
    res
}

/// `scipy.ndimage.gaussian_filter` over the two spatial axes (channels untouched), which is what
/// `skimage.filters.gaussian(x, sigma, multichannel=True)` calls. skimage's defaults are
/// `mode='nearest'`, `truncate=4.0`. A sigma of (almost) zero leaves the image unchanged, as SciPy
/// skips such axes.
pub fn gaussian_filter(img: &FloatImage, sigma: f64, border: Border, truncate: f64) -> FloatImage {
    if sigma <= 1e-15 {
        return img.clone();
    }
    let kernel = gaussian_kernel1d(sigma, truncate);
    let rows = correlate1d(img, &kernel, 0, border);
    correlate1d(&rows, &kernel, 1, border)
}

/// Correlates every channel with a centred 1-D kernel along `axis` (0 = rows, 1 = columns).
fn correlate1d(img: &FloatImage, kernel: &[f64], axis: usize, border: Border) -> FloatImage {
    // SciPy's order for symmetric kernels (`NI_Correlate1D`): centre tap first, then
    // `(x[i - d] + x[i + d]) * w[d]` from the outermost pair inwards.
    let radius = kernel.len() / 2;
    let mut out = FloatImage::zeros(img.height, img.width, img.channels);
    for y in 0..img.height {
        for x in 0..img.width {
            for c in 0..img.channels {
                let at = |d: isize| {
                    if axis == 0 {
                        img.at(border_index(y as isize + d, img.height, border), x, c)
                    } else {
                        img.at(y, border_index(x as isize + d, img.width, border), c)
                    }
                };
                let mut acc = at(0) * kernel[radius];
                for d in (1..=radius).rev() {
                    acc += (at(-(d as isize)) + at(d as isize)) * kernel[radius - d];
                }
                *out.at_mut(y, x, c) = acc;
            }
        }
    }
    out
}

/// `cv2.filter2D(x, -1, kernel)` per channel: correlation with a square `size × size` kernel
/// (row-major), anchor at the centre, `BORDER_REFLECT_101`.
pub fn filter2d_mirror(img: &FloatImage, kernel: &[f64], size: usize) -> FloatImage {
    let r = (size / 2) as isize;
    // Zero taps add exactly nothing; skipping them keeps the row-major summation order of the
    // others (and makes the 17×17 defocus kernel, mostly zeros, cheap).
    let taps: Vec<(isize, isize, f64)> = (0..size)
        .flat_map(|ky| (0..size).map(move |kx| (ky, kx)))
        .filter_map(|(ky, kx)| {
            let w = kernel[ky * size + kx];
            (w != 0.0).then_some((ky as isize - r, kx as isize - r, w))
        })
        .collect();
    let mut out = FloatImage::zeros(img.height, img.width, img.channels);
    for y in 0..img.height {
        for x in 0..img.width {
            for c in 0..img.channels {
                let mut acc = 0.0;
                for &(dy, dx, w) in &taps {
                    let sy = border_index(y as isize + dy, img.height, Border::Mirror);
                    let sx = border_index(x as isize + dx, img.width, Border::Mirror);
                    acc += w * img.at(sy, sx, c);
                }
                *out.at_mut(y, x, c) = acc;
            }
        }
    }
    out
}

/// `scipy.ndimage.zoom(img, (zy, zx, 1), order=1)` written as a resize to `out_h × out_w`
/// (SciPy's output shape is `round(n * zoom)`). SciPy's default `grid_mode=False` maps output index
/// `o` to input coordinate `o * (n_in - 1) / (n_out - 1)` and interpolates linearly.
pub fn zoom_linear(img: &FloatImage, out_h: usize, out_w: usize) -> FloatImage {
    let ratio = |n_in: usize, n_out: usize| {
        if n_out > 1 {
            (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
        } else {
            1.0
        }
    };
    let (ry, rx) = (ratio(img.height, out_h), ratio(img.width, out_w));
    let mut out = FloatImage::zeros(out_h, out_w, img.channels);
    for oy in 0..out_h {
        let (y0, y1, wy) = linear_taps(oy as f64 * ry, img.height);
        for ox in 0..out_w {
            let (x0, x1, wx) = linear_taps(ox as f64 * rx, img.width);
            for c in 0..img.channels {
                let top = img.at(y0, x0, c) * (1.0 - wx) + img.at(y0, x1, c) * wx;
                let bottom = img.at(y1, x0, c) * (1.0 - wx) + img.at(y1, x1, c) * wx;
                *out.at_mut(oy, ox, c) = top * (1.0 - wy) + bottom * wy;
            }
        }
    }
    out
}

/// Neighbour indices and weight of the second one for linear interpolation at `coord` in `0..n`.
fn linear_taps(coord: f64, n: usize) -> (usize, usize, f64) {
    let i0 = coord.floor().clamp(0.0, (n - 1) as f64);
    let w = (coord - i0).clamp(0.0, 1.0);
    let i0 = i0 as usize;
    (i0, (i0 + 1).min(n - 1), w)
}

/// `clipped_zoom(img, zoom_factor)` of the recipe: crop the centre `ceil(h / z)` square, zoom it
/// by `z` (linear), trim back to `h × h` from the top-left offset `(out - h) // 2`.
pub fn clipped_zoom(img: &FloatImage, zoom: f64) -> FloatImage {
    let h = img.height;
    let ch = (h as f64 / zoom).ceil() as usize;
    let top = (h - ch.min(h)) / 2;
    // SciPy rounds the output shape with Python's round (ties to even).
    let out_n = (ch as f64 * zoom).round_ties_even() as usize;
    let trim = (out_n.saturating_sub(h)) / 2;
    // Only the kept `h × h` window of the zoomed crop is computed, with exactly the arithmetic of
    // `zoom_linear` (same coordinates, same interpolation order), reading the crop in place.
    let ratio = if out_n > 1 {
        (ch as f64 - 1.0) / (out_n as f64 - 1.0)
    } else {
        1.0
    };
    let taps: Vec<(usize, usize, f64)> = (0..h)
        .map(|o| linear_taps((trim + o) as f64 * ratio, ch))
        .collect();
    let mut out = FloatImage::zeros(h, h, img.channels);
    for (y, &(y0, y1, wy)) in taps.iter().enumerate() {
        for (x, &(x0, x1, wx)) in taps.iter().enumerate() {
            for c in 0..img.channels {
                let p = |yy: usize, xx: usize| img.at(top + yy, top + xx, c);
                let upper = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                let lower = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                *out.at_mut(y, x, c) = upper * (1.0 - wy) + lower * wy;
            }
        }
    }
    out
}

/// ImageMagick's `MagickMotionBlurImage(radius, sigma, angle)` on an 8-bit image, as the recipe calls
/// it through Wand (read PNG, blur, write PNG).
///
/// ImageMagick (effect.c): kernel width `2 * ceil(radius) + 1`; one-sided weights
/// `exp(-i² / (2 sigma²))`, `i = 0..width`, normalised; tap `i` reads the pixel at offset
/// `(ceil(i cos θ - 0.5), ceil(i sin θ - 0.5))` (x = column, y = row) with the default `edge`
/// virtual-pixel method. Q16 ImageMagick accumulates on 16-bit quanta (`v · 257`), rounds the sum
/// to a 16-bit quantum, and the 8-bit PNG it writes holds `floor(q / 257)`; this reproduces
/// ImageMagick 6.9.11 Q16 bit for bit (see `tests/golden.rs`), so values are effectively floored.
pub fn motion_blur_u8(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    radius: f64,
    sigma: f64,
    angle_degrees: f64,
) -> Vec<u8> {
    let kernel_width = 2 * radius.ceil() as usize + 1;
    let mut kernel: Vec<f64> = (0..kernel_width)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let theta = angle_degrees.to_radians();
    let offsets: Vec<(isize, isize)> = (0..kernel_width)
        .map(|i| {
            let i = i as f64;
            (
                (i * theta.cos() - 0.5).ceil() as isize,
                (i * theta.sin() - 0.5).ceil() as isize,
            )
        })
        .collect();
    let mut out = vec![0u8; pixels.len()];
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let mut acc = 0.0;
                for (&w, &(dx, dy)) in kernel.iter().zip(&offsets) {
                    let sy = border_index(y as isize + dy, height, Border::Nearest);
                    let sx = border_index(x as isize + dx, width, Border::Nearest);
                    acc += w * (257.0 * f64::from(pixels[(sy * width + sx) * channels + c]));
                }
                let quantum = (acc + 0.5).floor().clamp(0.0, 65535.0) as u32;
                out[(y * width + x) * channels + c] = (quantum / 257) as u8;
            }
        }
    }
    out
}

/// `skimage.color.rgb2hsv` for one pixel in [0, 1]; hue in [0, 1).
pub fn rgb_to_hsv(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    let s = if v == 0.0 { 0.0 } else { delta / v };
    if delta == 0.0 {
        return (0.0, s, v);
    }
    // skimage assigns red, then green, then blue, so on ties the later channel wins.
    let h6 = if b == v {
        4.0 + (r - g) / delta
    } else if g == v {
        2.0 + (b - r) / delta
    } else {
        (g - b) / delta
    };
    ((h6 / 6.0).rem_euclid(1.0), s, v)
}

/// `skimage.color.hsv2rgb` for one pixel.
pub fn hsv_to_rgb(h: f64, s: f64, v: f64) -> (f64, f64, f64) {
    let hi = (h * 6.0).floor();
    let f = h * 6.0 - hi;
    let p = v * (1.0 - s);
    let q = v * (1.0 - f * s);
    let t = v * (1.0 - (1.0 - f) * s);
    match (hi as i64).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// `PIL.Image.resize(size, Image.BOX)` on 8-bit pixels (Pillow `Resample.c`): horizontal pass, then
/// vertical pass, each rounded to 8 bits. Box filter `1` on `(-0.5, 0.5]`, support
/// `0.5 * max(scale, 1)`, taps normalised and stored in 22-bit fixed point like Pillow's
/// `normalize_coeffs_8bpc`.
pub fn pil_box_resize(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    // Horizontal pass: height × out_w.
    let coeffs_x = pil_box_coeffs(width, out_w);
    let mut tmp = vec![0u8; height * out_w * channels];
    for y in 0..height {
        for (ox, (start, taps)) in coeffs_x.iter().enumerate() {
            for c in 0..channels {
                let mut acc: i64 = 1 << (PIL_PRECISION_BITS - 1);
                for (k, &w) in taps.iter().enumerate() {
                    acc += i64::from(pixels[(y * width + start + k) * channels + c]) * w;
                }
                tmp[(y * out_w + ox) * channels + c] = pil_clip8(acc);
            }
        }
    }
    // Vertical pass: out_h × out_w.
    let coeffs_y = pil_box_coeffs(height, out_h);
    let mut out = vec![0u8; out_h * out_w * channels];
    for (oy, (start, taps)) in coeffs_y.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..channels {
                let mut acc: i64 = 1 << (PIL_PRECISION_BITS - 1);
                for (k, &w) in taps.iter().enumerate() {
                    acc += i64::from(tmp[((start + k) * out_w + x) * channels + c]) * w;
                }
                out[(oy * out_w + x) * channels + c] = pil_clip8(acc);
            }
        }
    }
    out
}

/// Pillow's `PRECISION_BITS = 32 - 8 - 2`.
const PIL_PRECISION_BITS: u32 = 22;

fn pil_clip8(acc: i64) -> u8 {
    (acc >> PIL_PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow `precompute_coeffs` with the box filter: for each output index, the first input index and
/// the fixed-point weights.
fn pil_box_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 0.5 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = (x as f64 - center + 0.5) / filterscale;
                    if t > -0.5 && t <= 0.5 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    (0.5 + w * f64::from(1u32 << PIL_PRECISION_BITS)) as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// `cv2.resize(img, (0, 0), fx=f, fy=f)` with the default `INTER_LINEAR` on 8-bit pixels:
/// output size `round(n * f)`, source coordinate `(o + 0.5) / f - 0.5`, clamped at the edges,
/// rounded to the nearest integer. (For the frost textures `f = 0.2`, so every source coordinate
/// is an integer and the result is exact point sampling.)
pub fn cv2_resize_linear_u8(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    factor: f64,
) -> (Vec<u8>, usize, usize) {
    let out_h = (height as f64 * factor).round() as usize;
    let out_w = (width as f64 * factor).round() as usize;
    let inv = 1.0 / factor;
    let taps = |o: usize, n: usize| {
        let f = (o as f64 + 0.5) * inv - 0.5;
        let s = f.floor();
        let w = f - s;
        if s < 0.0 {
            (0, 0, 0.0)
        } else if s as usize >= n - 1 {
            (n - 1, n - 1, 0.0)
        } else {
            (s as usize, s as usize + 1, w)
        }
    };
    let mut out = vec![0u8; out_h * out_w * channels];
    for oy in 0..out_h {
        let (y0, y1, wy) = taps(oy, height);
        for ox in 0..out_w {
            let (x0, x1, wx) = taps(ox, width);
            for c in 0..channels {
                let p = |y: usize, x: usize| f64::from(pixels[(y * width + x) * channels + c]);
                let v = (p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx) * (1.0 - wy)
                    + (p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx) * wy;
                out[(oy * out_w + ox) * channels + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    (out, out_h, out_w)
}

/// Bilinear sample of channel `c` at fractional `(y, x)`; neighbours outside the image are mapped
/// with `border`.
pub fn bilinear(img: &FloatImage, y: f64, x: f64, c: usize, border: Border) -> f64 {
    let y0 = y.floor();
    let x0 = x.floor();
    let (wy, wx) = (y - y0, x - x0);
    let (y0, x0) = (y0 as isize, x0 as isize);
    let p = |yy: isize, xx: isize| {
        img.at(
            border_index(yy, img.height, border),
            border_index(xx, img.width, border),
            c,
        )
    };
    (p(y0, x0) * (1.0 - wx) + p(y0, x0 + 1) * wx) * (1.0 - wy)
        + (p(y0 + 1, x0) * (1.0 - wx) + p(y0 + 1, x0 + 1) * wx) * wy
}

/// `scipy.ndimage.map_coordinates(..., order=1, mode='reflect')` at one coordinate: the coordinate is
/// reflected (half-sample symmetric) into `[-0.5, n - 0.5]`, then interpolated linearly, the
/// neighbour beyond an edge being the edge pixel itself.
pub fn sample_reflect(img: &FloatImage, y: f64, x: f64, c: usize) -> f64 {
    let reflect = |v: f64, n: usize| {
        let period = 2.0 * n as f64;
        let t = (v + 0.5).rem_euclid(period);
        (if t >= n as f64 { period - t } else { t }) - 0.5
    };
    bilinear(
        img,
        reflect(y, img.height),
        reflect(x, img.width),
        c,
        Border::Nearest,
    )
}

/// `cv2.getAffineTransform(src, dst)`: the 2×3 matrix `M` with `M · (x, y, 1)ᵀ = dst` for the three
/// point pairs (points are `(x, y)`). `None` when the source points are collinear.
pub fn affine_from_points(src: [[f64; 2]; 3], dst: [[f64; 2]; 3]) -> Option<[[f64; 3]; 2]> {
    // Solve A · m = b for each output row, A rows = (x, y, 1); Cramer's rule on the 3×3 system.
    let a = [
        [src[0][0], src[0][1], 1.0],
        [src[1][0], src[1][1], 1.0],
        [src[2][0], src[2][1], 1.0],
    ];
    let det = det3(a);
    if det.abs() < 1e-12 {
        return None;
    }
    let mut m = [[0.0; 3]; 2];
    for (row, m_row) in m.iter_mut().enumerate() {
        let b = [dst[0][row], dst[1][row], dst[2][row]];
        for (col, entry) in m_row.iter_mut().enumerate() {
            let mut ac = a;
            for r in 0..3 {
                ac[r][col] = b[r];
            }
            *entry = det3(ac) / det;
        }
    }
    Some(m)
}

fn det3(a: [[f64; 3]; 3]) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// `cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REFLECT_101)` with bilinear interpolation:
/// `dst(x, y) = src(M⁻¹ · (x, y, 1))`. OpenCV quantises the source coordinate to 1/32 pixel; this
/// uses the exact coordinate (differences are below 1/64 of a pixel step).
pub fn warp_affine_mirror(img: &FloatImage, m: [[f64; 3]; 2]) -> FloatImage {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
    let (tx, ty) = (m[0][2], m[1][2]);
    let mut out = FloatImage::zeros(img.height, img.width, img.channels);
    for y in 0..img.height {
        for x in 0..img.width {
            let (u, v) = (x as f64 - tx, y as f64 - ty);
            let sx = a * u + b * v;
            let sy = c * u + d * v;
            for ch in 0..img.channels {
                *out.at_mut(y, x, ch) = bilinear(img, sy, sx, ch, Border::Mirror);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_modes_match_scipy_conventions() {
        // n = 4, indices -3..=6.
        let map = |b| (-3..=6).map(|i| border_index(i, 4, b)).collect::<Vec<_>>();
        assert_eq!(map(Border::Nearest), vec![0, 0, 0, 0, 1, 2, 3, 3, 3, 3]);
        assert_eq!(map(Border::Reflect), vec![2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
        assert_eq!(map(Border::Mirror), vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn gaussian_kernel_matches_scipy() {
        // SciPy 1.17.1: scipy.ndimage._filters._gaussian_kernel1d(0.4, 0, 2) (radius int(4*0.4+0.5) = 2).
        let k = gaussian_kernel1d(0.4, 4.0);
        assert_eq!(k.len(), 5);
        let expected = [
            3.4256063613481042e-06,
            4.0387616547241253e-02,
            9.192179156927948e-01,
            4.0387616547241253e-02,
            3.4256063613481042e-06,
        ];
        for (a, b) in k.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
    }

    #[test]
    fn hsv_round_trip() {
        for &(r, g, b) in &[
            (0.2, 0.4, 0.6),
            (1.0, 0.0, 0.0),
            (0.5, 0.5, 0.5),
            (0.1, 0.9, 0.3),
            (0.7, 0.2, 0.7),
        ] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-12 && (g - g2).abs() < 1e-12 && (b - b2).abs() < 1e-12);
        }
        let (h, s, v) = rgb_to_hsv(0.2, 0.4, 0.6);
        assert!((h - 7.0 / 12.0).abs() < 1e-12 && (s - 2.0 / 3.0).abs() < 1e-12 && v == 0.6);
    }

    #[test]
    fn pil_box_down_then_up_preserves_flat_images_and_size() {
        let flat = vec![77u8; 32 * 32 * 3];
        let small = pil_box_resize(&flat, 32, 32, 3, 20, 20);
        assert!(small.iter().all(|&v| v == 77));
        let big = pil_box_resize(&small, 20, 20, 3, 32, 32);
        assert_eq!(big.len(), 32 * 32 * 3);
        assert!(big.iter().all(|&v| v == 77));
    }

    #[test]
    fn pil_box_halving_averages_pairs() {
        // One row 4 → 2: box filter averages (10, 20) and (30, 41); Pillow rounds half up.
        let px = [10u8, 20, 30, 41];
        assert_eq!(pil_box_resize(&px, 1, 4, 1, 1, 2), vec![15, 36]);
    }

    #[test]
    fn zoom_identity_and_clipped_zoom_of_one() {
        let img = FloatImage {
            height: 4,
            width: 4,
            channels: 1,
            data: (0..16).map(f64::from).collect(),
        };
        assert_eq!(zoom_linear(&img, 4, 4), img);
        assert_eq!(clipped_zoom(&img, 1.0), img);
        // Zoom 4 → 7: input coordinate o * 3/6 = o / 2.
        let z = zoom_linear(&img, 7, 7);
        assert!((z.at(0, 1, 0) - 0.5).abs() < 1e-12);
        assert!((z.at(1, 0, 0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn motion_blur_kernel_is_one_sided() {
        // A single bright column at x = 5 on a 1×12 row, blur towards +x (angle 0): pixels at x ≤ 5
        // read x + i and see the bright pixel; pixels to its right never do.
        let mut px = vec![0u8; 12];
        px[5] = 200;
        let out = motion_blur_u8(&px, 1, 12, 1, 3.0, 1.0, 0.0);
        assert!(out[6..].iter().all(|&v| v == 0), "{out:?}");
        assert!(out[5] > out[4] && out[4] > out[3] && out[3] > 0, "{out:?}");
        let total: u32 = out.iter().map(|&v| u32::from(v)).sum();
        // Flooring (ImageMagick's 8-bit output) loses at most one level per touched pixel.
        assert!((193..=200).contains(&total), "{total}");
    }

    #[test]
    fn affine_solves_translation() {
        let src = [[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]];
        let dst = src.map(|p| [p[0] + 1.0, p[1] - 2.0]);
        let m = affine_from_points(src, dst).unwrap();
        let expect = [[1.0, 0.0, 1.0], [0.0, 1.0, -2.0]];
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - expect[r][c]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn reflect_sampling_at_edges() {
        let img = FloatImage {
            height: 1,
            width: 3,
            channels: 1,
            data: vec![1.0, 2.0, 4.0],
        };
        assert!((sample_reflect(&img, 0.0, -0.25, 0) - 1.0).abs() < 1e-12);
        assert!((sample_reflect(&img, 0.0, 2.25, 0) - 4.0).abs() < 1e-12);
        assert!((sample_reflect(&img, 0.0, 1.5, 0) - 3.0).abs() < 1e-12);
        // -1.0 reflects to 0.0.
        assert!((sample_reflect(&img, 0.0, -1.0, 0) - 1.0).abs() < 1e-12);
    }
}
