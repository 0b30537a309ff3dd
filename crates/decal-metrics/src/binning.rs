//! Equal-width confidence bins and the three bin-membership conventions (metrics.md §3.1).
//!
//! | convention    | bins                          | edges                                   | used by |
//! |---------------|-------------------------------|-----------------------------------------|---------|
//! | `torchmetrics`| `[lo, hi)` + an extra bin for `c == 1.0` exactly; `c = 0` in bin 1 | `torch.linspace(0, 1, M+1)` in float32 | paper, torchmetrics 1.1.2, torch-uncertainty |
//! | `guo`         | `(lo, hi]`; `c = 0` falls in no bin | `torch.linspace(0, 1, M+1)` in float32 | gpleiss `_ECELoss`, focal_calibration, the seed's TS printout |
//! | `histogram`   | `[lo, hi)`, last bin closed `[lo, 1]` | `numpy.linspace(0, 1, M+1)` in float64 | netcal, robustness_metrics |
//!
//! Edges are reproduced bit-for-bit (torch's `linspace` kernel computes `start + step·i` for the first
//! half and `end − step·(steps−1−i)` for the second half with a fused multiply-add; torchmetrics 1.1.2 casts
//! confidences to float32 and builds float32 edges, gpleiss always uses float32 edges; numpy computes `i·step` in float64 and
//! sets the last edge to exactly 1), so a confidence sitting on an edge lands in the same bin as in the
//! reference library. Confidences are compared as f64 (an f32 confidence widens exactly).

use serde::{Deserialize, Serialize};

/// Which bins a confidence belongs to (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// `[lo, hi)` plus an extra bin for `c == 1.0` (torchmetrics 1.1.2 `_binning_bucketize`).
    Torchmetrics,
    /// `(lo, hi]` (Guo et al. 2017 / gpleiss `_ECELoss`).
    Guo,
    /// `[lo, hi)` with the last bin closed (netcal, robustness_metrics).
    Histogram,
}

impl Membership {
    /// Parses `torchmetrics`, `guo` or `histogram`.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "torchmetrics" => Some(Membership::Torchmetrics),
            "guo" => Some(Membership::Guo),
            "histogram" => Some(Membership::Histogram),
            _ => None,
        }
    }

    /// The name used in `definitions` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Membership::Torchmetrics => "torchmetrics",
            Membership::Guo => "guo",
            Membership::Histogram => "histogram",
        }
    }

    /// One-line human description of the convention (for `definitions` and printed tables).
    pub fn describe(self) -> &'static str {
        match self {
            Membership::Torchmetrics => "bins [lo,hi) on float32 torch.linspace edges plus an extra bin for confidence == 1.0 (torchmetrics 1.1.2)",
            Membership::Guo => "bins (lo,hi] on float32 torch.linspace edges (Guo et al. 2017, gpleiss _ECELoss)",
            Membership::Histogram => "bins [lo,hi), last bin closed, on float64 numpy.linspace edges (netcal)",
        }
    }
}

/// `M` equal-width bins with a membership convention. Holds the `M + 1` edges as f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    num_bins: usize,
    membership: Membership,
    edges: Vec<f64>,
    // For the fast path of `slot`: `num_bins` as f64, and the edges followed by +inf (so that slot M, the
    // torchmetrics `c == 1` slot, has an upper bound too).
    scale: f64,
    padded: Vec<f64>,
}

/// `torch.linspace(0, 1, steps)` in float32, bit-exact with torch 2.11 (checked for 2..=201 steps):
/// `step = (end − start)/(steps − 1)` in float32; element `i` is `start + step·i` for `i < steps/2` and
/// `end − step·(steps − 1 − i)` otherwise, where torch's compiled kernel fuses the multiply-add (FMA), so the
/// second half is rounded once. The f32 product `step·k` is exact in f64, so evaluating in f64 and rounding
/// to f32 reproduces the fused operation.
pub fn torch_linspace_f32(steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![0.0];
    }
    let step = f64::from(1.0f32 / (steps - 1) as f32);
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                (step * i as f64) as f32
            } else {
                (1.0 - step * (steps - 1 - i) as f64) as f32
            }
        })
        .collect()
}

/// `torch.linspace(0, 1, steps)` in float64 by the same scalar formula as [`torch_linspace_f32`] (fused
/// multiply-add via `f64::mul_add`). torch's CPU kernel vectorises float64 differently, so individual edges may
/// differ from it in the last ulp (within 2 ulp on the tested sizes); no profile uses float64 edges.
pub fn torch_linspace_f64(steps: usize) -> Vec<f64> {
    if steps == 1 {
        return vec![0.0];
    }
    let step = 1.0f64 / (steps - 1) as f64;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step * i as f64
            } else {
                (-step).mul_add((steps - 1 - i) as f64, 1.0)
            }
        })
        .collect()
}

/// Floating-point width of the confidences being binned (selects torchmetrics' edge dtype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatWidth {
    /// float32 confidences (the seed: softmax of float32 logits).
    F32,
    /// float64 confidences.
    F64,
}

/// `numpy.linspace(0, 1, num)` in float64: `i · (1/(num−1))` with the last element set to exactly 1.
pub fn numpy_linspace_f64(num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![0.0];
    }
    let div = (num - 1) as f64;
    let step = 1.0 / div;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step).collect();
    v[num - 1] = 1.0;
    v
}

impl Bins {
    /// `num_bins ≥ 1` equal-width bins for float32 confidences (the seed's case).
    pub fn new(num_bins: usize, membership: Membership) -> Self {
        Self::for_width(num_bins, membership, FloatWidth::F32)
    }

    /// `num_bins ≥ 1` equal-width bins with torchmetrics edges in the given width (`F64` = edges of
    /// `torch.linspace(..., dtype=float64)`, for reproducing torch code that bins float64 confidences; note that
    /// torchmetrics 1.1.2 itself casts confidences to float32, so [`Bins::new`] is what reproduces it). Guo edges
    /// are always float32 (gpleiss), histogram edges always float64 (numpy).
    pub fn for_width(num_bins: usize, membership: Membership, width: FloatWidth) -> Self {
        let num_bins = num_bins.max(1);
        let edges = match (membership, width) {
            (Membership::Torchmetrics, FloatWidth::F64) => torch_linspace_f64(num_bins + 1),
            (Membership::Torchmetrics | Membership::Guo, _) => torch_linspace_f32(num_bins + 1)
                .into_iter()
                .map(f64::from)
                .collect(),
            (Membership::Histogram, _) => numpy_linspace_f64(num_bins + 1),
        };
        let mut padded = edges.clone();
        padded.push(f64::INFINITY);
        Bins {
            num_bins,
            membership,
            scale: num_bins as f64,
            padded,
            edges,
        }
    }

    /// Number of equal-width bins `M` (the torchmetrics extra bin is not counted).
    pub fn num_bins(&self) -> usize {
        self.num_bins
    }

    /// Number of slots an accumulator needs: `M + 1` for torchmetrics (extra `c == 1` bin), else `M`.
    pub fn num_slots(&self) -> usize {
        match self.membership {
            Membership::Torchmetrics => self.num_bins + 1,
            _ => self.num_bins,
        }
    }

    /// The membership convention.
    pub fn membership(&self) -> Membership {
        self.membership
    }

    /// The `M + 1` bin edges.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// An upper bound `u` such that every `c` with `0 ≤ c < u` is in slot 0 by [`Self::slot`]: the first
    /// bin's upper edge for the `[lo, hi)` conventions, 0 (an empty range) for `guo`, whose first bin is
    /// `(0, e_1]`.
    #[inline]
    pub fn first_bin_upper(&self) -> f64 {
        if self.membership == Membership::Guo {
            0.0
        } else {
            self.edges[1]
        }
    }

    /// `(lower, upper)` of slot `s`; the torchmetrics extra slot is `(1, 1)`.
    pub fn slot_range(&self, slot: usize) -> (f64, f64) {
        if slot >= self.num_bins {
            (1.0, 1.0)
        } else {
            (self.edges[slot], self.edges[slot + 1])
        }
    }

    /// The slot of confidence `c`, or `None` when the convention puts it in no bin (`guo` with `c ≤ 0`, any
    /// convention with `c` outside `[0, 1]` or NaN).
    ///
    /// Fast path for the hot loops (`[lo, hi)` conventions, `0 ≤ c ≤ 1`): the arithmetic guess `⌊c·M⌋` is moved
    /// at most one slot either way against the exact edges (enough for M < 2^23: the float32 edges are within
    /// an ulp of k/M), then accepted only if `e_k ≤ c < e_{k+1}` holds (slot M being `c ≥ e_M = 1`), which
    /// exactly one slot satisfies; `guo`, values outside `[0, 1]`, NaN and any failed check go through the
    /// full [`Self::slot_exact`], so both always agree (tested). Branch-free in the common case, because class
    /// probabilities land in unpredictable bins.
    #[inline(always)]
    pub fn slot(&self, c: f64) -> Option<usize> {
        if (0.0..=1.0).contains(&c) && self.membership != Membership::Guo {
            let m = self.num_bins;
            let e = &self.padded;
            // 0 ≤ c·M ≤ M: the signed conversion is exact and cheaper than the unsigned one.
            let k0 = ((c * self.scale) as i64 as usize).min(m - 1);
            let k = k0 + usize::from(c >= e[k0 + 1]) - usize::from(c < e[k0]);
            if e[k] <= c && c < e[k + 1] {
                // Slot M is the torchmetrics `c == 1` bin; the histogram convention closes bin M − 1 instead.
                return Some(if self.membership == Membership::Histogram {
                    k.min(m - 1)
                } else {
                    k
                });
            }
        }
        self.slot_exact(c)
    }

    /// [`Self::slot`] without the fast path (the definition).
    #[inline(never)]
    pub fn slot_exact(&self, c: f64) -> Option<usize> {
        if !(0.0..=1.0).contains(&c) {
            return None;
        }
        let m = self.num_bins;
        // Initial guess from the arithmetic position, then corrected against the exact edges (at most a step
        // or two, because the edges are within an ulp of k/M).
        let mut k = ((c * m as f64) as usize).min(m - 1);
        let e = &self.edges;
        match self.membership {
            Membership::Torchmetrics | Membership::Histogram => {
                // Want e[k] <= c < e[k+1].
                while k > 0 && c < e[k] {
                    k -= 1;
                }
                while k + 1 < m && c >= e[k + 1] {
                    k += 1;
                }
                if c >= e[m] {
                    // c == 1.0 exactly (or above the last float32 edge, which is exactly 1).
                    return Some(if self.membership == Membership::Torchmetrics {
                        m
                    } else {
                        m - 1
                    });
                }
                if k + 1 == m && c >= e[k + 1] {
                    return Some(m - 1);
                }
                Some(k)
            }
            Membership::Guo => {
                if c <= e[0] {
                    return None;
                }
                // Want e[k] < c <= e[k+1].
                while k > 0 && c <= e[k] {
                    k -= 1;
                }
                while k + 1 < m && c > e[k + 1] {
                    k += 1;
                }
                if c > e[m] {
                    return None;
                }
                Some(k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchmetrics_edges_and_the_exact_one_bin() {
        let b = Bins::new(10, Membership::Torchmetrics);
        assert_eq!(b.num_slots(), 11);
        assert_eq!(b.slot(1.0), Some(10));
        assert_eq!(b.slot(0.0), Some(0));
        assert_eq!(b.slot(0.95), Some(9));
        assert_eq!(b.slot(0.05), Some(0));
        // The float32 edge 0.1f = 0.10000000149..., so 0.1 (f64) is still in bin 0 and 0.1f in bin 1.
        assert_eq!(b.slot(0.1), Some(0));
        assert_eq!(b.slot(0.1f32 as f64), Some(1));
        assert_eq!(b.slot(1.0000001), None);
    }

    #[test]
    fn guo_and_histogram_membership() {
        let g = Bins::new(10, Membership::Guo);
        assert_eq!(g.num_slots(), 10);
        assert_eq!(g.slot(0.0), None);
        assert_eq!(g.slot(1.0), Some(9));
        assert_eq!(g.slot(0.5), Some(4));
        let h = Bins::new(10, Membership::Histogram);
        assert_eq!(h.slot(1.0), Some(9));
        assert_eq!(h.slot(0.0), Some(0));
        assert_eq!(h.slot(0.5), Some(5));
    }

    #[test]
    fn slot_agrees_with_a_linear_scan() {
        for (membership, width) in [
            (Membership::Torchmetrics, FloatWidth::F32),
            (Membership::Torchmetrics, FloatWidth::F64),
            (Membership::Guo, FloatWidth::F32),
            (Membership::Histogram, FloatWidth::F64),
        ] {
            for m in [1, 2, 3, 7, 10, 15, 20, 100] {
                let b = Bins::for_width(m, membership, width);
                let mut probes: Vec<f64> = b.edges().to_vec();
                for e in b.edges() {
                    probes.push(f64::from_bits(e.to_bits().saturating_add(1)));
                    if *e > 0.0 {
                        probes.push(f64::from_bits(e.to_bits() - 1));
                    }
                }
                probes.extend((0..=1000).map(|i| i as f64 / 1000.0));
                for c in probes {
                    let e = b.edges();
                    let expect = match membership {
                        Membership::Torchmetrics => {
                            if c > 1.0 {
                                None
                            } else if c == 1.0 {
                                Some(m)
                            } else {
                                (0..m).find(|&k| e[k] <= c && c < e[k + 1])
                            }
                        }
                        Membership::Histogram => {
                            if c > 1.0 {
                                None
                            } else {
                                (0..m).find(|&k| {
                                    e[k] <= c && (c < e[k + 1] || (k == m - 1 && c <= e[m]))
                                })
                            }
                        }
                        Membership::Guo => (0..m).find(|&k| e[k] < c && c <= e[k + 1]),
                    };
                    assert_eq!(b.slot(c), expect, "{membership:?} M={m} c={c}");
                    assert_eq!(b.slot_exact(c), expect, "{membership:?} M={m} c={c}");
                    // The classwise accumulator's first-bin shortcut.
                    if (0.0..b.first_bin_upper()).contains(&c) {
                        assert_eq!(expect, Some(0), "{membership:?} M={m} c={c}");
                    }
                }
            }
        }
    }
}
