//! `mandelbrot`: iteration counts of an image tile, in Q4.27 fixed point so
//! that every device computes bit-identical counts (exact comparator).

use serde::{Deserialize, Serialize};

use super::{check_buffer, invalid, Checkpoint, KernelError, KernelId};

pub(super) const WGSL: &str = include_str!("wgsl/mandelbrot.wgsl");

/// Fractional bits of the fixed-point format (Q4.27 in an i32).
pub const FRAC_BITS: u32 = 27;
const ONE: i64 = 1 << FRAC_BITS;
const TWO: i32 = 2 << FRAC_BITS;
const FOUR: i32 = 4 << FRAC_BITS;
/// Every point of a tile must lie within ±4 so no intermediate overflows.
const PLANE_LIMIT: i64 = 4 * ONE;
/// Largest tile edge.
pub const MAX_TILE_EDGE: u32 = 4096;
/// Most iterations per pixel.
pub const MAX_ITER: u32 = 1 << 20;
/// Integer operations of one iteration (three 64-bit multiplies from
/// 16-bit limbs, the escape test and the update), an upper bound.
pub const OPS_PER_ITERATION: u64 = 40;

/// `v` in Q4.27 (rounded to nearest; saturating).
pub fn fixed_from_f64(v: f64) -> i32 {
    let scaled = (v * ONE as f64).round();
    if scaled >= f64::from(i32::MAX) {
        i32::MAX
    } else if scaled <= f64::from(i32::MIN) {
        i32::MIN
    } else {
        scaled as i32
    }
}

/// `(a × b) >> 27` on the magnitudes, truncated toward zero, then signed:
/// exactly what the shader's `fx_mul` computes.
pub fn fixed_mul(a: i32, b: i32) -> i32 {
    let negative = (a < 0) != (b < 0);
    let p = u64::from(a.unsigned_abs()) * u64::from(b.unsigned_abs());
    let r = (p >> FRAC_BITS) as u32 as i32;
    if negative {
        r.wrapping_neg()
    } else {
        r
    }
}

/// Parameters of a `mandelbrot` tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandelbrotParams {
    /// Tile width in pixels.
    pub width: u32,
    /// Tile height in pixels.
    pub height: u32,
    /// Real part of the top-left pixel (Q4.27).
    pub x0: i32,
    /// Imaginary part of the top-left pixel (Q4.27).
    pub y0: i32,
    /// Distance between neighbouring pixels (Q4.27, > 0).
    pub step: i32,
    /// Iteration cap.
    pub max_iter: u32,
}

impl MandelbrotParams {
    /// A tile from floating-point plane coordinates.
    pub fn from_plane(width: u32, height: u32, x0: f64, y0: f64, step: f64, max_iter: u32) -> Self {
        MandelbrotParams {
            width,
            height,
            x0: fixed_from_f64(x0),
            y0: fixed_from_f64(y0),
            step: fixed_from_f64(step),
            max_iter,
        }
    }

    pub(super) fn validate(&self) -> Result<(), KernelError> {
        let k = KernelId::Mandelbrot;
        if self.width == 0 || self.width > MAX_TILE_EDGE {
            return Err(invalid(k, "width", format!("must be in 1..={MAX_TILE_EDGE}")));
        }
        if self.height == 0 || self.height > MAX_TILE_EDGE {
            return Err(invalid(k, "height", format!("must be in 1..={MAX_TILE_EDGE}")));
        }
        if self.step <= 0 {
            return Err(invalid(k, "step", "must be positive"));
        }
        if self.max_iter == 0 || self.max_iter > MAX_ITER {
            return Err(invalid(k, "max_iter", format!("must be in 1..={MAX_ITER}")));
        }
        let step = i64::from(self.step);
        let x1 = i64::from(self.x0) + i64::from(self.width - 1) * step;
        let y1 = i64::from(self.y0) + i64::from(self.height - 1) * step;
        for (name, v) in
            [("x0", i64::from(self.x0)), ("y0", i64::from(self.y0)), ("x0 + width·step", x1), ("y0 + height·step", y1)]
        {
            if !(-PLANE_LIMIT..=PLANE_LIMIT).contains(&v) {
                return Err(invalid(k, name, "must lie within [-4, 4] of the complex plane"));
            }
        }
        check_buffer(k, "counts", u64::from(self.width) * u64::from(self.height) * 4)
    }

    pub(super) fn ops(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * u64::from(self.max_iter) * OPS_PER_ITERATION
    }

    pub(super) fn dispatch(&self) -> [u32; 3] {
        [self.width.div_ceil(8), self.height.div_ceil(8), 1]
    }

    /// Iterations before escape for one point, as the shader computes it.
    pub fn iterations(&self, cx: i32, cy: i32) -> u32 {
        let (mut x, mut y) = (0i32, 0i32);
        let mut i = 0u32;
        while i < self.max_iter {
            if x.wrapping_abs() > TWO || y.wrapping_abs() > TWO {
                break;
            }
            let x2 = fixed_mul(x, x);
            let y2 = fixed_mul(y, y);
            if x2.wrapping_add(y2) > FOUR {
                break;
            }
            let xy = fixed_mul(x, y);
            y = xy.wrapping_add(xy).wrapping_add(cy);
            x = x2.wrapping_sub(y2).wrapping_add(cx);
            i += 1;
        }
        i
    }

    pub(super) fn run_cpu(&self, cp: &mut Checkpoint<'_>) -> Result<Vec<u8>, KernelError> {
        let mut out = Vec::with_capacity(self.width as usize * self.height as usize * 4);
        for py in 0..self.height {
            let cy = self.y0.wrapping_add((py as i32).wrapping_mul(self.step));
            for px in 0..self.width {
                let cx = self.x0.wrapping_add((px as i32).wrapping_mul(self.step));
                let n = self.iterations(cx, cy);
                out.extend_from_slice(&n.to_le_bytes());
                cp.work(u64::from(n) + 1)?;
            }
        }
        Ok(out)
    }
}

/// A square view of the Mandelbrot set cut into square tiles, one task
/// per tile in row-major order: the one tiling the CLI (`shoal submit
/// --kernel mandelbrot`), the `shoal up` demo and the dashboard share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// Image edge in pixels.
    pub edge: u32,
    /// Tile edge in pixels (the last row and column may be narrower).
    pub tile: u32,
    /// Iteration cap of every tile.
    pub max_iter: u32,
}

impl Tiling {
    /// The whole set (−2.25…0.75 by −1.5…1.5) in `edge` × `edge` pixels,
    /// in tiles of `tile` (clamped to 1…edge and to [`MAX_TILE_EDGE`]).
    pub fn new(edge: u32, tile: u32, max_iter: u32) -> Self {
        let edge = edge.max(1);
        Tiling { edge, tile: tile.clamp(1, edge.min(MAX_TILE_EDGE)), max_iter }
    }

    /// Tiles per row (and per column).
    pub fn per_row(&self) -> u32 {
        self.edge.div_ceil(self.tile)
    }

    /// The tiles' parameters, row by row.
    pub fn tiles(&self) -> Vec<MandelbrotParams> {
        let step = 3.0 / f64::from(self.edge);
        let mut tiles = Vec::with_capacity((self.per_row() * self.per_row()) as usize);
        for ty in (0..self.edge).step_by(self.tile as usize) {
            for tx in (0..self.edge).step_by(self.tile as usize) {
                tiles.push(MandelbrotParams::from_plane(
                    self.tile.min(self.edge - tx),
                    self.tile.min(self.edge - ty),
                    -2.25 + f64::from(tx) * step,
                    -1.5 + f64::from(ty) * step,
                    step,
                    self.max_iter,
                ));
            }
        }
        tiles
    }
}

/// Where the tiles of one image go: any set of Mandelbrot tiles of one
/// step (a [`Tiling`]'s, or a client's own), placed by their plane
/// coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// Real part of the image's left edge (Q4.27).
    pub min_x0: i32,
    /// Imaginary part of its top edge (Q4.27).
    pub min_y0: i32,
    /// The common step (Q4.27).
    pub step: i32,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

impl ImageLayout {
    /// The layout of these tiles, if they share one positive step and
    /// make an image of at most `max_edge` pixels a side.
    pub fn of(tiles: &[MandelbrotParams], max_edge: u32) -> Option<ImageLayout> {
        let first = tiles.first()?;
        if first.step <= 0 || tiles.iter().any(|t| t.step != first.step) {
            return None;
        }
        let min_x0 = tiles.iter().map(|t| t.x0).min()?;
        let min_y0 = tiles.iter().map(|t| t.y0).min()?;
        let mut layout = ImageLayout { min_x0, min_y0, step: first.step, width: 0, height: 0 };
        for t in tiles {
            let (x, y) = layout.offset(t);
            layout.width = layout.width.max(x.saturating_add(t.width));
            layout.height = layout.height.max(y.saturating_add(t.height));
        }
        (layout.width <= max_edge && layout.height <= max_edge).then_some(layout)
    }

    /// A tile's top-left pixel in the image (rounded to the nearest
    /// pixel: tiles cut from floating-point plane coordinates sit a
    /// rounding step off the exact multiples of the step).
    pub fn offset(&self, tile: &MandelbrotParams) -> (u32, u32) {
        let step = i64::from(self.step.max(1));
        let dx = (i64::from(tile.x0) - i64::from(self.min_x0) + step / 2).div_euclid(step);
        let dy = (i64::from(tile.y0) - i64::from(self.min_y0) + step / 2).div_euclid(step);
        (dx.clamp(0, i64::from(u32::MAX)) as u32, dy.clamp(0, i64::from(u32::MAX)) as u32)
    }
}

/// How far out a pixel escaped, for shading: `None` inside the set (the
/// count reached `max_iter`), else `√(count / max_iter)` in 0…1.
pub fn escape_shade(count: u32, max_iter: u32) -> Option<f64> {
    (count < max_iter).then(|| (f64::from(count) / f64::from(max_iter.max(1))).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiling_covers_its_image_once_and_its_layout_places_every_tile() {
        let tiling = Tiling::new(200, 64, 256);
        let tiles = tiling.tiles();
        assert_eq!(tiling.per_row(), 4);
        assert_eq!(tiles.len(), 16);
        let layout = ImageLayout::of(&tiles, 8192).expect("one step");
        assert_eq!((layout.width, layout.height), (200, 200));
        let mut covered = vec![0u8; 200 * 200];
        for (i, t) in tiles.iter().enumerate() {
            let (x, y) = layout.offset(t);
            assert_eq!((x, y), ((i as u32 % 4) * 64, (i as u32 / 4) * 64), "row-major placement");
            for yy in y..y + t.height {
                for xx in x..x + t.width {
                    covered[(yy * 200 + xx) as usize] += 1;
                }
            }
        }
        assert!(covered.iter().all(|&c| c == 1), "every pixel exactly once");
        assert_eq!(ImageLayout::of(&tiles, 100), None, "too big for the cap");
        let mut mixed = tiles.clone();
        mixed[1].step += 1;
        assert_eq!(ImageLayout::of(&mixed, 8192), None, "tiles of different steps");
        assert_eq!(escape_shade(256, 256), None);
        assert_eq!(escape_shade(64, 256), Some(0.5));
    }
}
