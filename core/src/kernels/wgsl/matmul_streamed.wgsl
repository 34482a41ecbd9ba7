// The streamed matmul program, for the element type `Elem` its header
// names (`matmul_f32`: f32; `matmul_f16`: f16): C = A × B, row-major, A is
// m×k, B is k×n, C written as f32, for n and k multiples of 4 (vec4 loads).
//
// Each invocation computes 16 rows × 16 columns of C: the 16 rows are the
// same for the whole workgroup (their A values are uniform loads), and the
// columns are four vec4s, 16 vec4s apart, so neighbouring invocations read
// neighbouring vec4s of B. No workgroup memory and no barriers: this suits
// devices that run invocations as SIMD lanes of CPU threads (lavapipe,
// SwiftShader), and the executor picks it only where it measures faster
// than the tiled program. Per element the k products are summed in
// ascending order from 0.0, as the CPU reference and the tiled program do.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<Elem>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<Elem>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

// Four vec4s of one row of C (or of B): columns col.x, col.y, col.z, col.w.
struct Row {
    c0: vec4<Elem>,
    c1: vec4<Elem>,
    c2: vec4<Elem>,
    c3: vec4<Elem>,
}

// acc + x · b, per column.
fn step(acc: Row, x: Elem, b: Row) -> Row {
    return Row(acc.c0 + x * b.c0, acc.c1 + x * b.c1, acc.c2 + x * b.c2, acc.c3 + x * b.c3);
}

// Four steps along k, in ascending order.
fn quad(acc: Row, x: vec4<Elem>, b0: Row, b1: Row, b2: Row, b3: Row) -> Row {
    return step(step(step(step(acc, x.x, b0), x.y, b1), x.z, b2), x.w, b3);
}

// Row kk of B at this invocation's columns (clamped into the matrix: the
// stores leave out what lies beyond it).
fn load_b(kk: u32, n4: u32, cols: vec4<u32>) -> Row {
    let base = kk * n4;
    return Row(b[base + cols.x], b[base + cols.y], b[base + cols.z], b[base + cols.w]);
}

fn store(row: u32, r: Row, col: vec4<u32>, m: u32, n4: u32) {
    if (row >= m) {
        return;
    }
    let o = row * n4;
    if (col.x < n4) {
        c[o + col.x] = vec4<f32>(r.c0);
    }
    if (col.y < n4) {
        c[o + col.y] = vec4<f32>(r.c1);
    }
    if (col.z < n4) {
        c[o + col.z] = vec4<f32>(r.c2);
    }
    if (col.w < n4) {
        c[o + col.w] = vec4<f32>(r.c3);
    }
}

@compute @workgroup_size(16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m = params.m;
    let n4 = params.n / 4u;
    let k4 = params.k / 4u;
    let row0 = wid.y * 16u;
    let col = vec4<u32>(wid.x * 64u + lid.x) + vec4<u32>(0u, 16u, 32u, 48u);
    let cols = min(col, vec4<u32>(n4 - 1u));
    let zero = Row(vec4<Elem>(0.0), vec4<Elem>(0.0), vec4<Elem>(0.0), vec4<Elem>(0.0));
    // Where each of the 16 rows starts in A (in vec4s; rows past m repeat
    // the last, and are not stored).
    let a0 = min(row0 + 0u, m - 1u) * k4;
    let a1 = min(row0 + 1u, m - 1u) * k4;
    let a2 = min(row0 + 2u, m - 1u) * k4;
    let a3 = min(row0 + 3u, m - 1u) * k4;
    let a4 = min(row0 + 4u, m - 1u) * k4;
    let a5 = min(row0 + 5u, m - 1u) * k4;
    let a6 = min(row0 + 6u, m - 1u) * k4;
    let a7 = min(row0 + 7u, m - 1u) * k4;
    let a8 = min(row0 + 8u, m - 1u) * k4;
    let a9 = min(row0 + 9u, m - 1u) * k4;
    let a10 = min(row0 + 10u, m - 1u) * k4;
    let a11 = min(row0 + 11u, m - 1u) * k4;
    let a12 = min(row0 + 12u, m - 1u) * k4;
    let a13 = min(row0 + 13u, m - 1u) * k4;
    let a14 = min(row0 + 14u, m - 1u) * k4;
    let a15 = min(row0 + 15u, m - 1u) * k4;
    var r0 = zero;
    var r1 = zero;
    var r2 = zero;
    var r3 = zero;
    var r4 = zero;
    var r5 = zero;
    var r6 = zero;
    var r7 = zero;
    var r8 = zero;
    var r9 = zero;
    var r10 = zero;
    var r11 = zero;
    var r12 = zero;
    var r13 = zero;
    var r14 = zero;
    var r15 = zero;
    for (var q = 0u; q < k4; q = q + 1u) {
        let b0 = load_b(q * 4u + 0u, n4, cols);
        let b1 = load_b(q * 4u + 1u, n4, cols);
        let b2 = load_b(q * 4u + 2u, n4, cols);
        let b3 = load_b(q * 4u + 3u, n4, cols);
        r0 = quad(r0, a[a0 + q], b0, b1, b2, b3);
        r1 = quad(r1, a[a1 + q], b0, b1, b2, b3);
        r2 = quad(r2, a[a2 + q], b0, b1, b2, b3);
        r3 = quad(r3, a[a3 + q], b0, b1, b2, b3);
        r4 = quad(r4, a[a4 + q], b0, b1, b2, b3);
        r5 = quad(r5, a[a5 + q], b0, b1, b2, b3);
        r6 = quad(r6, a[a6 + q], b0, b1, b2, b3);
        r7 = quad(r7, a[a7 + q], b0, b1, b2, b3);
        r8 = quad(r8, a[a8 + q], b0, b1, b2, b3);
        r9 = quad(r9, a[a9 + q], b0, b1, b2, b3);
        r10 = quad(r10, a[a10 + q], b0, b1, b2, b3);
        r11 = quad(r11, a[a11 + q], b0, b1, b2, b3);
        r12 = quad(r12, a[a12 + q], b0, b1, b2, b3);
        r13 = quad(r13, a[a13 + q], b0, b1, b2, b3);
        r14 = quad(r14, a[a14 + q], b0, b1, b2, b3);
        r15 = quad(r15, a[a15 + q], b0, b1, b2, b3);
    }
    store(row0 + 0u, r0, col, m, n4);
    store(row0 + 1u, r1, col, m, n4);
    store(row0 + 2u, r2, col, m, n4);
    store(row0 + 3u, r3, col, m, n4);
    store(row0 + 4u, r4, col, m, n4);
    store(row0 + 5u, r5, col, m, n4);
    store(row0 + 6u, r6, col, m, n4);
    store(row0 + 7u, r7, col, m, n4);
    store(row0 + 8u, r8, col, m, n4);
    store(row0 + 9u, r9, col, m, n4);
    store(row0 + 10u, r10, col, m, n4);
    store(row0 + 11u, r11, col, m, n4);
    store(row0 + 12u, r12, col, m, n4);
    store(row0 + 13u, r13, col, m, n4);
    store(row0 + 14u, r14, col, m, n4);
    store(row0 + 15u, r15, col, m, n4);
}
