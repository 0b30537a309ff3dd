//! `plasma_fractal` of the recipe (diamond-square height map, after FLHerne/mapgen), used by `fog`.
//!
//! The map is toroidal (neighbours wrap around, `np.roll`), starts with `map[0, 0] = 0`, adds
//! `wibble * U(-wibble, wibble)` to every new point, divides `wibble` by `wibble_decay` after each
//! level, and is finally rescaled to [0, 1]. The CIFAR script calls it with `mapsize=32`.

use crate::rng::uniform;
use rand::Rng;

/// A `map_size × map_size` height map in [0, 1], row-major. `map_size` must be a power of two.
pub fn plasma_fractal<R: Rng>(rng: &mut R, map_size: usize, wibble_decay: f64) -> Vec<f64> {
    assert!(
        map_size.is_power_of_two(),
        "plasma map size should be a power of two"
    );
    let n = map_size;
    let mut map = vec![0.0f64; n * n];
    let mut step = n;
    let mut wibble = 100.0f64;
    let at = |y: usize, x: usize| y * n + x;
    while step >= 2 {
        let half = step / 2;
        let cells = n / step;
        let wibbled = |rng: &mut R, sum: f64| sum / 4.0 + wibble * uniform(rng, -wibble, wibble);
        // Squares: the centre of each step×step cell is the mean of its 4 corners (wrapping).
        for i in 0..cells {
            for j in 0..cells {
                let (i1, j1) = ((i + 1) % cells, (j + 1) % cells);
                let sum = map[at(i * step, j * step)]
                    + map[at(i1 * step, j * step)]
                    + map[at(i * step, j1 * step)]
                    + map[at(i1 * step, j1 * step)];
                map[at(i * step + half, j * step + half)] = wibbled(rng, sum);
            }
        }
        // Diamonds: edge midpoints are the mean of the two corners and two centres around them.
        let mut top = vec![0.0; cells * cells];
        let mut left = vec![0.0; cells * cells];
        for i in 0..cells {
            for j in 0..cells {
                let centre = |ci: usize, cj: usize| map[at(ci * step + half, cj * step + half)];
                let corner = |ci: usize, cj: usize| map[at(ci * step, cj * step)];
                let (iu, jl) = ((i + cells - 1) % cells, (j + cells - 1) % cells);
                // Point (i*step, j*step + half): corners left/right, centres below/above.
                let sum_top =
                    centre(i, j) + centre(iu, j) + corner(i, j) + corner(i, (j + 1) % cells);
                // Point (i*step + half, j*step): corners above/below, centres right/left.
                let sum_left =
                    centre(i, j) + centre(i, jl) + corner(i, j) + corner((i + 1) % cells, j);
                top[i * cells + j] = sum_top;
                left[i * cells + j] = sum_left;
            }
        }
        // The recipe computes both sums before writing either set of points.
        for i in 0..cells {
            for j in 0..cells {
                map[at(i * step, j * step + half)] = wibbled(rng, top[i * cells + j]);
            }
        }
        for i in 0..cells {
            for j in 0..cells {
                map[at(i * step + half, j * step)] = wibbled(rng, left[i * cells + j]);
            }
        }
        step /= 2;
        wibble /= wibble_decay;
    }
    let min = map.iter().copied().fold(f64::INFINITY, f64::min);
    map.iter_mut().for_each(|v| *v -= min);
    let max = map.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max > 0.0 {
        map.iter_mut().for_each(|v| *v /= max);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::Corruption;
    use crate::rng::image_rng;

    #[test]
    fn plasma_is_normalised_and_smooth() {
        let mut rng = image_rng(3, Corruption::Fog, 1, 0);
        let map = plasma_fractal(&mut rng, 32, 3.0);
        assert_eq!(map.len(), 1024);
        let min = map.iter().copied().fold(f64::INFINITY, f64::min);
        let max = map.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((min, max), (0.0, 1.0));
        // With decay 3 the fine levels carry little energy: neighbouring values are close on
        // average compared with the full range.
        let mean_step: f64 = (0..32)
            .flat_map(|y| (0..31).map(move |x| (y, x)))
            .map(|(y, x)| (map[y * 32 + x] - map[y * 32 + x + 1]).abs())
            .sum::<f64>()
            / (32.0 * 31.0);
        assert!(mean_step < 0.1, "{mean_step}");
    }
}
