//! A JPEG round trip that reproduces what the recipe's `jpeg_compression` does through PIL:
//! `img.save(buf, 'JPEG', quality=q)` followed by `Image.open(buf)`, i.e. libjpeg(-turbo) with its
//! defaults: baseline, 4:2:0 chroma subsampling, the accurate integer ("islow") DCT, IJG quality
//! scaling of the Annex K tables, and on decoding the islow IDCT, "fancy" (triangular) chroma
//! upsampling and the fixed-point YCbCr→RGB tables.
//!
//! Entropy coding is lossless, so it is skipped: the pixels go through colour conversion,
//! downsampling, forward DCT and quantisation, then dequantisation, inverse DCT, upsampling and
//! colour conversion, each written after the corresponding libjpeg routine (`jccolor.c`,
//! `jcsample.c` h2v2_downsample, `jfdctint.c`, `jcdctmgr.c` quantize, `jidctint.c`,
//! `jdsample.c` h2v2_fancy_upsample, `jdcolor.c`). Image sides must be multiples of 16 (one 4:2:0
//! MCU), which holds for 32×32; other sizes use the `jpeg-encoder` + `image` path instead.

/// libjpeg's `SCALEBITS` for colour conversion.
const SCALEBITS: u32 = 16;
const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
const CBCR_OFFSET: i64 = 128 << SCALEBITS;

/// `FIX(x)` of jccolor.c / jdcolor.c.
fn fix16(x: f64) -> i64 {
    (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64
}

// jfdctint.c / jidctint.c constants: CONST_BITS = 13, PASS1_BITS = 2, FIX(x) = round(x * 2^13).
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

/// JPEG Annex K luminance table, natural (row-major) order.
const STD_LUMA: [u32; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
/// JPEG Annex K chrominance table, natural order.
const STD_CHROMA: [u32; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// `jpeg_set_quality(quality, force_baseline=TRUE)`: IJG scaling, clamped to 1..=255.
pub fn quant_table(base: &[u32; 64], quality: u8) -> [i64; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - q * 2 };
    let mut out = [0i64; 64];
    for (o, &b) in out.iter_mut().zip(base) {
        *o = i64::from(((b * scale + 50) / 100).clamp(1, 255));
    }
    out
}

fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// Round trip of an RGB image (HWC, both sides multiples of 16) at `quality`.
pub fn libjpeg_round_trip(pixels: &[u8], height: usize, width: usize, quality: u8) -> Vec<u8> {
    debug_assert!(height % 16 == 0 && width % 16 == 0);
    let luma_q = quant_table(&STD_LUMA, quality);
    let chroma_q = quant_table(&STD_CHROMA, quality);
    let n = height * width;
    // jccolor.c rgb_ycc_convert.
    let (mut y, mut cb, mut cr) = (vec![0i64; n], vec![0i64; n], vec![0i64; n]);
    for i in 0..n {
        let (r, g, b) = (
            i64::from(pixels[3 * i]),
            i64::from(pixels[3 * i + 1]),
            i64::from(pixels[3 * i + 2]),
        );
        y[i] =
            (fix16(0.29900) * r + fix16(0.58700) * g + fix16(0.11400) * b + ONE_HALF) >> SCALEBITS;
        cb[i] =
            (-fix16(0.16874) * r - fix16(0.33126) * g + fix16(0.5) * b + CBCR_OFFSET + ONE_HALF
                - 1)
                >> SCALEBITS;
        cr[i] = (fix16(0.5) * r - fix16(0.41869) * g - fix16(0.08131) * b + CBCR_OFFSET + ONE_HALF
            - 1)
            >> SCALEBITS;
    }
    let (ch, cw) = (height / 2, width / 2);
    let cb_small = downsample_h2v2(&cb, height, width);
    let cr_small = downsample_h2v2(&cr, height, width);
    let y_out = code_plane(&y, height, width, &luma_q);
    let cb_out = upsample_h2v2_fancy(&code_plane(&cb_small, ch, cw, &chroma_q), ch, cw);
    let cr_out = upsample_h2v2_fancy(&code_plane(&cr_small, ch, cw, &chroma_q), ch, cw);
    // jdcolor.c ycc_rgb_convert with its lookup tables, clamped by range_limit.
    let mut out = vec![0u8; n * 3];
    for i in 0..n {
        let (yy, b_, r_) = (y_out[i], cb_out[i] - 128, cr_out[i] - 128);
        let cr_r = (fix16(1.40200) * r_ + ONE_HALF) >> SCALEBITS;
        let cb_b = (fix16(1.77200) * b_ + ONE_HALF) >> SCALEBITS;
        let g_off = (-fix16(0.34414) * b_ + ONE_HALF + -fix16(0.71414) * r_) >> SCALEBITS;
        out[3 * i] = (yy + cr_r).clamp(0, 255) as u8;
        out[3 * i + 1] = (yy + g_off).clamp(0, 255) as u8;
        out[3 * i + 2] = (yy + cb_b).clamp(0, 255) as u8;
    }
    out
}

/// jcsample.c `h2v2_downsample`: 2×2 sums with the alternating bias 1, 2, 1, 2, … along a row.
fn downsample_h2v2(plane: &[i64], height: usize, width: usize) -> Vec<i64> {
    let (oh, ow) = (height / 2, width / 2);
    let mut out = vec![0i64; oh * ow];
    for r in 0..oh {
        let mut bias = 1;
        for c in 0..ow {
            let (a, b) = ((2 * r) * width + 2 * c, (2 * r + 1) * width + 2 * c);
            out[r * ow + c] = (plane[a] + plane[a + 1] + plane[b] + plane[b + 1] + bias) >> 2;
            bias ^= 3;
        }
    }
    out
}

/// Forward DCT, quantisation, dequantisation and inverse DCT of every 8×8 block of a plane.
fn code_plane(plane: &[i64], height: usize, width: usize, q: &[i64; 64]) -> Vec<i64> {
    let mut out = vec![0i64; plane.len()];
    for by in (0..height).step_by(8) {
        for bx in (0..width).step_by(8) {
            let mut block = [0i64; 64];
            for r in 0..8 {
                for c in 0..8 {
                    block[r * 8 + c] = plane[(by + r) * width + bx + c] - 128;
                }
            }
            fdct_islow(&mut block);
            // jcdctmgr.c quantize with divisors `q << 3`: round half away from zero.
            let mut coef = [0i64; 64];
            for i in 0..64 {
                let qval = q[i] << 3;
                let t = block[i];
                coef[i] = if t < 0 {
                    -((-t + (qval >> 1)) / qval)
                } else {
                    (t + (qval >> 1)) / qval
                };
            }
            let pixels = idct_islow(&coef, q);
            for r in 0..8 {
                for c in 0..8 {
                    out[(by + r) * width + bx + c] = pixels[r * 8 + c];
                }
            }
        }
    }
    out
}

/// jfdctint.c `jpeg_fdct_islow`, in place; output scaled up by 8.
fn fdct_islow(data: &mut [i64; 64]) {
    for pass in 0..2 {
        for k in 0..8 {
            // Pass 0 works on rows, pass 1 on columns.
            let idx = |j: usize| if pass == 0 { k * 8 + j } else { j * 8 + k };
            let d: [i64; 8] = std::array::from_fn(|j| data[idx(j)]);
            let (tmp0, tmp7) = (d[0] + d[7], d[0] - d[7]);
            let (tmp1, tmp6) = (d[1] + d[6], d[1] - d[6]);
            let (tmp2, tmp5) = (d[2] + d[5], d[2] - d[5]);
            let (tmp3, tmp4) = (d[3] + d[4], d[3] - d[4]);
            let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
            let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
            let (shift_even, shift_odd) = if pass == 0 {
                (0, CONST_BITS - PASS1_BITS)
            } else {
                (PASS1_BITS, CONST_BITS + PASS1_BITS)
            };
            if pass == 0 {
                data[idx(0)] = (tmp10 + tmp11) << PASS1_BITS;
                data[idx(4)] = (tmp10 - tmp11) << PASS1_BITS;
            } else {
                data[idx(0)] = descale(tmp10 + tmp11, shift_even);
                data[idx(4)] = descale(tmp10 - tmp11, shift_even);
            }
            let z1 = (tmp12 + tmp13) * FIX_0_541196100;
            data[idx(2)] = descale(z1 + tmp13 * FIX_0_765366865, shift_odd);
            data[idx(6)] = descale(z1 - tmp12 * FIX_1_847759065, shift_odd);
            let (z1, z2, z3, z4) = (tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7);
            let z5 = (z3 + z4) * FIX_1_175875602;
            let (t4, t5, t6, t7) = (
                tmp4 * FIX_0_298631336,
                tmp5 * FIX_2_053119869,
                tmp6 * FIX_3_072711026,
                tmp7 * FIX_1_501321110,
            );
            let (z1, z2) = (-z1 * FIX_0_899976223, -z2 * FIX_2_562915447);
            let z3 = -z3 * FIX_1_961570560 + z5;
            let z4 = -z4 * FIX_0_390180644 + z5;
            data[idx(7)] = descale(t4 + z1 + z3, shift_odd);
            data[idx(5)] = descale(t5 + z2 + z4, shift_odd);
            data[idx(3)] = descale(t6 + z2 + z3, shift_odd);
            data[idx(1)] = descale(t7 + z1 + z4, shift_odd);
        }
    }
}

/// jidctint.c `jpeg_idct_islow`: dequantise and invert one block; samples are range-limited like
/// libjpeg's `range_limit[x & RANGE_MASK]` table.
fn idct_islow(coef: &[i64; 64], q: &[i64; 64]) -> [i64; 64] {
    let mut ws = [0i64; 64];
    let mut out = [0i64; 64];
    for pass in 0..2 {
        for k in 0..8 {
            let get = |j: usize| {
                if pass == 0 {
                    coef[j * 8 + k] * q[j * 8 + k]
                } else {
                    ws[k * 8 + j]
                }
            };
            let (z2, z3) = (get(2), get(6));
            let z1 = (z2 + z3) * FIX_0_541196100;
            let tmp2 = z1 - z3 * FIX_1_847759065;
            let tmp3 = z1 + z2 * FIX_0_765366865;
            let (z2, z3) = (get(0), get(4));
            let tmp0 = (z2 + z3) << CONST_BITS;
            let tmp1 = (z2 - z3) << CONST_BITS;
            let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
            let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
            let (t0, t1, t2, t3) = (get(7), get(5), get(3), get(1));
            let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
            let z5 = (z3 + z4) * FIX_1_175875602;
            let (t0, t1, t2, t3) = (
                t0 * FIX_0_298631336,
                t1 * FIX_2_053119869,
                t2 * FIX_3_072711026,
                t3 * FIX_1_501321110,
            );
            let (z1, z2) = (-z1 * FIX_0_899976223, -z2 * FIX_2_562915447);
            let z3 = -z3 * FIX_1_961570560 + z5;
            let z4 = -z4 * FIX_0_390180644 + z5;
            let (t0, t1, t2, t3) = (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4);
            let vals = [
                tmp10 + t3,
                tmp11 + t2,
                tmp12 + t1,
                tmp13 + t0,
                tmp13 - t0,
                tmp12 - t1,
                tmp11 - t2,
                tmp10 - t3,
            ];
            for (j, v) in vals.into_iter().enumerate() {
                if pass == 0 {
                    ws[j * 8 + k] = descale(v, CONST_BITS - PASS1_BITS);
                } else {
                    out[k * 8 + j] = range_limit(descale(v, CONST_BITS + PASS1_BITS + 3));
                }
            }
        }
    }
    out
}

/// libjpeg's post-IDCT `range_limit[x & RANGE_MASK]` (x already centred on 0): −128..=127 map to
/// 0..=255, larger values saturate, far-out values wrap as the 1024-entry table does.
fn range_limit(x: i64) -> i64 {
    let t = x & 1023;
    match t {
        0..=127 => t + 128,
        128..=383 => 255,
        384..=895 => 0,
        _ => t - 896,
    }
}

/// jdsample.c `h2v2_fancy_upsample`: triangular filter, weights 3/4 and 1/4 in each direction, with
/// the edge rows/columns replicated.
fn upsample_h2v2_fancy(plane: &[i64], height: usize, width: usize) -> Vec<i64> {
    let (oh, ow) = (height * 2, width * 2);
    let mut out = vec![0i64; oh * ow];
    for r in 0..height {
        for v in 0..2 {
            let near = r;
            let far = if v == 0 {
                r.saturating_sub(1)
            } else {
                (r + 1).min(height - 1)
            };
            let colsum = |c: usize| plane[near * width + c] * 3 + plane[far * width + c];
            let row = &mut out[(2 * r + v) * ow..(2 * r + v + 1) * ow];
            for c in 0..width {
                let this = colsum(c);
                let (left, right) = if width == 1 {
                    (this, this)
                } else {
                    (
                        if c == 0 { this } else { colsum(c - 1) },
                        if c + 1 == width { this } else { colsum(c + 1) },
                    )
                };
                // First and last columns: libjpeg uses `this * 4` in place of the missing neighbour.
                row[2 * c] = (this * 3 + left + 8) >> 4;
                row[2 * c + 1] = (this * 3 + right + 7) >> 4;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_scaling_matches_libjpeg() {
        // PIL quality=80: luma starts 6, 4, 4, 6, 10, 16, 20, 24; chroma 7, 7, 10, 19, 40, ...
        let l = quant_table(&STD_LUMA, 80);
        assert_eq!(&l[..8], &[6, 4, 4, 6, 10, 16, 20, 24]);
        let c = quant_table(&STD_CHROMA, 80);
        assert_eq!(&c[..8], &[7, 7, 10, 19, 40, 40, 40, 40]);
        assert_eq!(quant_table(&STD_LUMA, 40)[0], 20);
    }

    #[test]
    fn flat_grey_stays_flat_with_dc_quantisation_error() {
        // Grey 97: DC = (97 - 128) * 64 = -1984; at quality 40 the DC divisor is 20 << 3 = 160, so the
        // coefficient is -12, dequantised -240, and the block decodes to 128 - 30 = 98 everywhere.
        let px = vec![97u8; 32 * 32 * 3];
        assert!(libjpeg_round_trip(&px, 32, 32, 40).iter().all(|&v| v == 98));
        // At quality 100 (divisor 8) it is exact.
        assert_eq!(libjpeg_round_trip(&px, 32, 32, 100), px);
    }

    #[test]
    fn dct_round_trip_without_quantisation_is_near_identity() {
        let mut block = [0i64; 64];
        for (i, b) in block.iter_mut().enumerate() {
            *b = ((i * 37) % 255) as i64 - 128;
        }
        let original = block;
        fdct_islow(&mut block);
        let ones = [1i64; 64];
        // Quantise by 1 (divisor 8) as libjpeg would at quality 100.
        let coef: [i64; 64] = std::array::from_fn(|i| {
            let t = block[i];
            if t < 0 {
                -((-t + 4) / 8)
            } else {
                (t + 4) / 8
            }
        });
        let back = idct_islow(&coef, &ones);
        for i in 0..64 {
            assert!(
                (back[i] - 128 - original[i]).abs() <= 1,
                "{i}: {} vs {}",
                back[i] - 128,
                original[i]
            );
        }
    }
}
