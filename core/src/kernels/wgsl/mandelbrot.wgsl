// Shoal kernel `mandelbrot`: iteration counts of one image tile.
// All arithmetic is Q4.27 fixed point on i32 with an exact 32×32→64-bit
// multiply built from 16-bit limbs, so every GPU, every browser and the CPU
// reference produce bit-identical counts (floating point would differ at
// the set's boundary between devices that fuse multiply-adds and those that
// do not). Output: width×height u32 counts, row-major.

struct Params {
    width: u32,
    height: u32,
    x0: i32,
    y0: i32,
    step: i32,
    max_iter: u32,
    _pad0: u32,
    _pad1: u32,
}

const FRAC_BITS: u32 = 27u;
const TWO: i32 = 268435456; // 2.0 in Q4.27
const FOUR: i32 = 536870912; // 4.0 in Q4.27

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;

// (a × b) >> 27 on magnitudes, truncated toward zero, then signed.
fn fx_mul(a: i32, b: i32) -> i32 {
    let negative = (a < 0) != (b < 0);
    let ua = u32(abs(a));
    let ub = u32(abs(b));
    let a_lo = ua & 0xffffu;
    let a_hi = ua >> 16u;
    let b_lo = ub & 0xffffu;
    let b_hi = ub >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = lh + hl;
    let mid_carry = select(0u, 1u, mid < lh);
    let lo = ll + (mid << 16u);
    let lo_carry = select(0u, 1u, lo < ll);
    let hi = hh + (mid >> 16u) + (mid_carry << 16u) + lo_carry;
    let magnitude = (hi << (32u - FRAC_BITS)) | (lo >> FRAC_BITS);
    let r = bitcast<i32>(magnitude);
    return select(r, -r, negative);
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.width || gid.y >= params.height) {
        return;
    }
    let cx = params.x0 + bitcast<i32>(gid.x) * params.step;
    let cy = params.y0 + bitcast<i32>(gid.y) * params.step;
    var x = 0;
    var y = 0;
    var i = 0u;
    loop {
        if (i >= params.max_iter) {
            break;
        }
        if (abs(x) > TWO || abs(y) > TWO) {
            break;
        }
        let x2 = fx_mul(x, x);
        let y2 = fx_mul(y, y);
        if (x2 + y2 > FOUR) {
            break;
        }
        let xy = fx_mul(x, y);
        y = xy + xy + cy;
        x = x2 - y2 + cx;
        i = i + 1u;
    }
    counts[gid.y * params.width + gid.x] = i;
}
