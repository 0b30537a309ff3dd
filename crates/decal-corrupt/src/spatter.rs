//! The OpenCV pieces of the recipe's `spatter` (water mode): Canny edges, the 5×5 chamfer distance
//! transform, histogram equalisation, 3×3 box blur and an 8-bit `filter2D`, all on one channel.
//!
//! Conventions follow OpenCV 4 (`imgproc`): Canny uses 3×3 Sobel with `BORDER_REPLICATE`, the L1
//! gradient norm, non-maximum suppression with the tan(22.5°) sector test and 8-connected
//! hysteresis; `distanceTransform(DIST_L2, 5)` is the two-pass chamfer with weights 1, 1.4 and
//! 2.1969 (pixels outside the image are not zeros); `blur` and `filter2D` use `BORDER_REFLECT_101`.

use crate::ops::{border_index, Border};

/// A one-channel `f64` plane, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width` values.
    pub data: Vec<f64>,
}

impl Plane {
    fn at(&self, y: isize, x: isize, border: Border) -> f64 {
        let yy = border_index(y, self.height, border);
        let xx = border_index(x, self.width, border);
        self.data[yy * self.width + xx]
    }
}

/// `cv2.Canny(img, low, high)` (aperture 3, L1 norm): 255 on edges, 0 elsewhere.
pub fn canny(img: &Plane, low: f64, high: f64) -> Vec<u8> {
    let (h, w) = (img.height, img.width);
    let (hi, wi) = (h as isize, w as isize);
    let mut dx = vec![0.0; h * w];
    let mut dy = vec![0.0; h * w];
    for y in 0..hi {
        for x in 0..wi {
            let p = |yy: isize, xx: isize| img.at(yy, xx, Border::Nearest);
            dx[(y * wi + x) as usize] = (p(y - 1, x + 1) + 2.0 * p(y, x + 1) + p(y + 1, x + 1))
                - (p(y - 1, x - 1) + 2.0 * p(y, x - 1) + p(y + 1, x - 1));
            dy[(y * wi + x) as usize] = (p(y + 1, x - 1) + 2.0 * p(y + 1, x) + p(y + 1, x + 1))
                - (p(y - 1, x - 1) + 2.0 * p(y - 1, x) + p(y - 1, x + 1));
        }
    }
    let mag: Vec<f64> = dx.iter().zip(&dy).map(|(a, b)| a.abs() + b.abs()).collect();
    let mag_at = |y: isize, x: isize| {
        if y < 0 || x < 0 || y >= hi || x >= wi {
            0.0
        } else {
            mag[(y * wi + x) as usize]
        }
    };
    // 0 = not an edge, 1 = weak candidate, 2 = strong edge.
    let mut state = vec![0u8; h * w];
    let tg22 = (22.5f64).to_radians().tan();
    for y in 0..hi {
        for x in 0..wi {
            let i = (y * wi + x) as usize;
            let m = mag[i];
            if m <= low {
                continue;
            }
            let (ax, ay) = (dx[i].abs(), dy[i].abs());
            let is_max = if ay < ax * tg22 {
                m > mag_at(y, x - 1) && m >= mag_at(y, x + 1)
            } else if ay > ax * (tg22 + 2.0) {
                // tan(67.5°) = tan(22.5°) + 2.
                m > mag_at(y - 1, x) && m >= mag_at(y + 1, x)
            } else {
                let s: isize = if (dx[i] < 0.0) != (dy[i] < 0.0) {
                    -1
                } else {
                    1
                };
                m > mag_at(y - 1, x - s) && m > mag_at(y + 1, x + s)
            };
            if is_max {
                state[i] = if m > high { 2 } else { 1 };
            }
        }
    }
    let mut stack: Vec<usize> = (0..h * w).filter(|&i| state[i] == 2).collect();
    while let Some(i) = stack.pop() {
        let (y, x) = ((i / w) as isize, (i % w) as isize);
        for ny in y - 1..=y + 1 {
            for nx in x - 1..=x + 1 {
                if ny >= 0 && nx >= 0 && ny < hi && nx < wi {
                    let j = (ny * wi + nx) as usize;
                    if state[j] == 1 {
                        state[j] = 2;
                        stack.push(j);
                    }
                }
            }
        }
    }
    state
        .iter()
        .map(|&s| if s == 2 { 255 } else { 0 })
        .collect()
}

/// `cv2.distanceTransform(src, cv2.DIST_L2, 5)`: distance of every non-zero pixel to the nearest zero
/// pixel with the 5×5 chamfer metric. When the image has no zero pixel, OpenCV leaves a very large
/// value; callers truncate it (the recipe truncates at 20).
pub fn distance_transform_l2_5(src: &[u8], height: usize, width: usize) -> Vec<f64> {
    const A: f64 = 1.0;
    const B: f64 = 1.4;
    const C: f64 = 2.1969;
    const FAR: f64 = 1e9;
    let mut d: Vec<f64> = src
        .iter()
        .map(|&v| if v == 0 { 0.0 } else { FAR })
        .collect();
    // (dy, dx, weight) of the forward half of the 5×5 mask; the backward half mirrors it.
    let forward: [(isize, isize, f64); 8] = [
        (-2, -1, C),
        (-2, 1, C),
        (-1, -2, C),
        (-1, -1, B),
        (-1, 0, A),
        (-1, 1, B),
        (-1, 2, C),
        (0, -1, A),
    ];
    let (hi, wi) = (height as isize, width as isize);
    let pass = |d: &mut Vec<f64>, reverse: bool| {
        for step in 0..height * width {
            let idx = if reverse {
                height * width - 1 - step
            } else {
                step
            };
            let (y, x) = ((idx / width) as isize, (idx % width) as isize);
            let mut best = d[idx];
            for &(dy, dx, wgt) in &forward {
                let (dy, dx) = if reverse { (-dy, -dx) } else { (dy, dx) };
                let (ny, nx) = (y + dy, x + dx);
                if ny >= 0 && nx >= 0 && ny < hi && nx < wi {
                    best = best.min(d[(ny * wi + nx) as usize] + wgt);
                }
            }
            d[idx] = best;
        }
    };
    pass(&mut d, false);
    pass(&mut d, true);
    d
}

/// `cv2.blur(img, (3, 3))` on a float plane (`BORDER_REFLECT_101`).
pub fn box_blur3(img: &Plane) -> Plane {
    let mut out = Plane {
        height: img.height,
        width: img.width,
        data: vec![0.0; img.data.len()],
    };
    for y in 0..img.height as isize {
        for x in 0..img.width as isize {
            let mut acc = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    acc += img.at(y + dy, x + dx, Border::Mirror);
                }
            }
            out.data[y as usize * img.width + x as usize] = acc / 9.0;
        }
    }
    out
}

/// `cv2.filter2D(img, cv2.CV_8U, kernel)` with a 3×3 kernel on an 8-bit plane: correlation,
/// `BORDER_REFLECT_101`, saturated and rounded to 8 bits.
pub fn filter2d_3x3_u8(img: &[u8], height: usize, width: usize, kernel: [[f64; 3]; 3]) -> Vec<u8> {
    let plane = Plane {
        height,
        width,
        data: img.iter().map(|&v| f64::from(v)).collect(),
    };
    let mut out = vec![0u8; img.len()];
    for y in 0..height as isize {
        for x in 0..width as isize {
            let mut acc = 0.0;
            for (ky, row) in kernel.iter().enumerate() {
                for (kx, &k) in row.iter().enumerate() {
                    acc += k * plane.at(y + ky as isize - 1, x + kx as isize - 1, Border::Mirror);
                }
            }
            out[y as usize * width + x as usize] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `cv2.equalizeHist` on an 8-bit plane.
pub fn equalize_hist(img: &[u8]) -> Vec<u8> {
    let mut hist = [0usize; 256];
    for &v in img {
        hist[usize::from(v)] += 1;
    }
    let total = img.len();
    let first = match hist.iter().position(|&c| c > 0) {
        Some(i) => i,
        None => return img.to_vec(),
    };
    if hist[first] == total {
        return vec![first as u8; total];
    }
    let scale = 255.0 / (total - hist[first]) as f64;
    let mut lut = [0u8; 256];
    let mut sum = 0usize;
    for j in first + 1..256 {
        sum += hist[j];
        lut[j] = (sum as f64 * scale).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    img.iter().map(|&v| lut[usize::from(v)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canny_finds_a_step_edge() {
        // Left half 0, right half 200: the edge is the column pair at the step.
        let (h, w) = (8, 8);
        let data = (0..h * w)
            .map(|i| if i % w >= 4 { 200.0 } else { 0.0 })
            .collect();
        let edges = canny(
            &Plane {
                height: h,
                width: w,
                data,
            },
            50.0,
            150.0,
        );
        for y in 0..h {
            let row = &edges[y * w..(y + 1) * w];
            assert_eq!(row.iter().filter(|&&v| v == 255).count(), 1, "{row:?}");
            assert!(row[3] == 255 || row[4] == 255);
        }
        let flat = canny(
            &Plane {
                height: h,
                width: w,
                data: vec![9.0; h * w],
            },
            50.0,
            150.0,
        );
        assert!(flat.iter().all(|&v| v == 0));
    }

    #[test]
    fn chamfer_distances() {
        let mut src = vec![255u8; 7 * 7];
        src[3 * 7 + 3] = 0;
        let d = distance_transform_l2_5(&src, 7, 7);
        assert_eq!(d[3 * 7 + 3], 0.0);
        assert_eq!(d[3 * 7 + 4], 1.0);
        assert!((d[4 * 7 + 4] - 1.4).abs() < 1e-12);
        assert!((d[5 * 7 + 4] - 2.1969).abs() < 1e-12);
        assert!((d[3 * 7 + 6] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn equalize_spreads_to_full_range() {
        let out = equalize_hist(&[10, 10, 20, 30]);
        assert_eq!(out, vec![0, 0, 128, 255]);
        assert_eq!(equalize_hist(&[7, 7]), vec![7, 7]);
    }
}
