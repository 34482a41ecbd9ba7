//! The dashboard's arithmetic, free of the browser: amounts in tokens,
//! relative times, the live throughput series, Mandelbrot tile colours
//! (placement is the core's `ImageLayout`). Tested natively; the
//! components only display what this computes.

use shoal_core::coordinator::rewards::TOKEN;

/// Seconds of history the throughput chart keeps.
pub const HISTORY_SECS: usize = 300;

/// An amount of base units as tokens with six decimals (truncated, never
/// rounded up), digits grouped by thousands: `1 234.500000`.
pub fn tokens(base_units: u128) -> String {
    let whole = base_units / TOKEN;
    let micro = (base_units % TOKEN) / (TOKEN / 1_000_000);
    format!("{}.{micro:06}", group_thousands(whole))
}

/// Parses a decimal amount of base units as the API sends it (`"0"` for an
/// empty string).
pub fn parse_amount(s: &str) -> Option<u128> {
    if s.is_empty() {
        return Some(0);
    }
    s.parse().ok()
}

/// `1234567` → `1 234 567` (thin spaces would not survive every font; a
/// plain space does).
pub fn group_thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// How long ago `then_ms` was at `now_ms`, for people: `4 s ago`, `3 min ago`.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 {
        return "never".into();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// Parts per million as a percent with one decimal.
pub fn ppm_percent(ppm: u32) -> String {
    format!("{}.{} %", ppm / 10_000, (ppm % 10_000) / 1_000)
}

/// Verified tasks and operations per second over the last
/// [`HISTORY_SECS`] seconds, fed by the live event stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// The second the last bucket covers.
    now_s: u64,
    tasks: Vec<u32>,
    ops: Vec<u64>,
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput { now_s: 0, tasks: vec![0; HISTORY_SECS], ops: vec![0; HISTORY_SECS] }
    }
}

impl Throughput {
    /// Moves the window so that its last bucket is second `now_s`.
    pub fn advance(&mut self, now_s: u64) {
        if now_s <= self.now_s {
            return;
        }
        let shift = ((now_s - self.now_s) as usize).min(HISTORY_SECS);
        self.tasks.drain(..shift);
        self.tasks.extend(std::iter::repeat_n(0, shift));
        self.ops.drain(..shift);
        self.ops.extend(std::iter::repeat_n(0, shift));
        self.now_s = now_s;
    }

    /// One verified task of `ops` operations at second `at_s`.
    pub fn record(&mut self, at_s: u64, ops: u64) {
        self.advance(at_s);
        let back = (self.now_s - at_s.min(self.now_s)) as usize;
        if back < HISTORY_SECS {
            let i = HISTORY_SECS - 1 - back;
            self.tasks[i] += 1;
            self.ops[i] += ops;
        }
    }

    /// Tasks verified per second, oldest first.
    pub fn tasks(&self) -> &[u32] {
        &self.tasks
    }

    /// Mean tasks/s over the last `secs` complete seconds.
    pub fn recent_rate(&self, secs: usize) -> f64 {
        let secs = secs.clamp(1, HISTORY_SECS - 1);
        let end = HISTORY_SECS - 1; // the current second is still filling
        self.tasks[end - secs..end].iter().map(|&t| f64::from(t)).sum::<f64>() / secs as f64
    }

    /// Mean GOPS over the last `secs` complete seconds.
    pub fn recent_gops(&self, secs: usize) -> f64 {
        let secs = secs.clamp(1, HISTORY_SECS - 1);
        let end = HISTORY_SECS - 1;
        self.ops[end - secs..end].iter().map(|&o| o as f64).sum::<f64>() / secs as f64 / 1e9
    }
}

/// An SVG polyline of `values` in a `width` × `height` box (0 at the bottom,
/// the largest value at the top).
pub fn polyline(values: &[u32], width: f64, height: f64) -> String {
    let max = f64::from(values.iter().copied().max().unwrap_or(0).max(1));
    let n = values.len().max(2) - 1;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let x = width * i as f64 / n as f64;
            let y = height - height * f64::from(v) / max;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// RGBA pixels of a tile from its iteration counts (little-endian u32 per
/// pixel): inside the set black, outside a blue-to-gold ramp.
pub fn mandelbrot_rgba(iterations: &[u8], max_iter: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(iterations.len());
    for px in iterations.chunks_exact(4) {
        let it = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        if let Some(t) = shoal_core::kernels::mandelbrot::escape_shade(it, max_iter) {
            let r = (255.0 * t) as u8;
            let g = (200.0 * t * t + 30.0 * (1.0 - t)) as u8;
            let b = (90.0 + 120.0 * (1.0 - t)) as u8;
            out.extend_from_slice(&[r, g, b, 255]);
        } else {
            out.extend_from_slice(&[0, 0, 0, 255]);
        }
    }
    out
}

/// Centres of `n` nodes on an ellipse filling a `width` × `height` box
/// (the first at the top, clockwise): the consensus diagram's layout.
pub fn ring(n: usize, width: f64, height: f64, margin: f64) -> Vec<(f64, f64)> {
    let (cx, cy) = (width / 2.0, height / 2.0);
    let (rx, ry) = ((width / 2.0 - margin).max(0.0), (height / 2.0 - margin).max(0.0));
    (0..n)
        .map(|i| {
            let a = -std::f64::consts::FRAC_PI_2 + std::f64::consts::TAU * i as f64 / n.max(1) as f64;
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// The segment from `a` to `b` shortened by `gap` at both ends (edges stop
/// at the nodes' rims); `None` when the nodes are too close.
pub fn edge(a: (f64, f64), b: (f64, f64), gap: f64) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt();
    if len <= 2.0 * gap {
        return None;
    }
    let (ux, uy) = (dx / len, dy / len);
    Some(((a.0 + ux * gap, a.1 + uy * gap), (b.0 - ux * gap, b.1 - uy * gap)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_tokens() {
        assert_eq!(tokens(0), "0.000000");
        assert_eq!(tokens(720 * TOKEN), "720.000000");
        assert_eq!(tokens(1_234 * TOKEN + TOKEN / 2), "1 234.500000");
        assert_eq!(tokens(TOKEN - 1), "0.999999", "truncated, never rounded up");
        assert_eq!(tokens(u128::MAX), "340 282 366 920 938 463 463.374607");
        assert_eq!(parse_amount("720000000000000000000"), Some(720 * TOKEN));
        assert_eq!(parse_amount(""), Some(0));
        assert_eq!(parse_amount("12x"), None);
    }

    #[test]
    fn times_and_ratios_read_well() {
        assert_eq!(ago(10_000, 0), "never");
        assert_eq!(ago(10_000, 6_000), "4 s ago");
        assert_eq!(ago(400_000, 100_000), "5 min ago");
        assert_eq!(ago(10_000, 20_000), "0 s ago", "a clock a little ahead is not the future");
        assert_eq!(ppm_percent(995_000), "99.5 %");
        assert_eq!(ppm_percent(1_000_000), "100.0 %");
    }

    #[test]
    fn throughput_slides_and_averages() {
        let mut t = Throughput::default();
        for s in 1000..1010 {
            for _ in 0..5 {
                t.record(s, 2_000_000_000);
            }
        }
        t.advance(1010);
        assert!((t.recent_rate(10) - 5.0).abs() < 1e-9);
        assert!((t.recent_gops(10) - 10.0).abs() < 1e-9);
        assert_eq!(t.tasks().len(), HISTORY_SECS);
        t.record(600, 1);
        assert_eq!(t.tasks().iter().sum::<u32>(), 50, "older than the window: dropped");
        t.advance(1010 + HISTORY_SECS as u64 + 5);
        assert_eq!(t.tasks().iter().sum::<u32>(), 0, "all slid out");
    }

    #[test]
    fn the_chart_spans_its_box() {
        let p = polyline(&[0, 5, 10], 100.0, 50.0);
        assert_eq!(p, "0.0,50.0 50.0,25.0 100.0,0.0");
        assert_eq!(polyline(&[0, 0], 10.0, 10.0), "0.0,10.0 10.0,10.0", "flat at zero, no division by zero");
    }

    #[test]
    fn the_diagram_layout_is_a_ring_inside_its_box() {
        let r = ring(4, 200.0, 100.0, 10.0);
        assert_eq!(r.len(), 4);
        let near = |p: (f64, f64), q: (f64, f64)| (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9;
        assert!(near(r[0], (100.0, 10.0)), "first at the top: {:?}", r[0]);
        assert!(near(r[1], (190.0, 50.0)), "then clockwise: {:?}", r[1]);
        let ((x0, y0), (x1, y1)) = edge((0.0, 0.0), (10.0, 0.0), 2.0).expect("long enough");
        assert!(near((x0, y0), (2.0, 0.0)) && near((x1, y1), (8.0, 0.0)));
        assert_eq!(edge((0.0, 0.0), (3.0, 0.0), 2.0), None);
    }

    #[test]
    fn tiles_are_shaded_black_inside_the_set() {
        let px = mandelbrot_rgba(&[7, 0, 0, 0, 100, 0, 0, 0], 100);
        assert_eq!(&px[4..], &[0, 0, 0, 255], "inside the set is black");
        assert_eq!(px.len(), 8);
    }
}
