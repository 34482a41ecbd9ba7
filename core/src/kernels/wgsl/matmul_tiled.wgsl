// The tiled matmul program, for the element type `Elem` its header names
// (`matmul_f32`: f32; `matmul_f16`: f16): C = A × B, row-major, A is m×k,
// B is k×n, C written as f32.
//
// Register-tiled: each 16×16 workgroup computes a 64×64 block of C, each
// invocation a 4×4 sub-block of it, from 64×16 and 16×64 tiles of A and B
// staged in workgroup memory per step along k. An invocation's outputs
// are strided by 16 (rows ty, ty+16, …; columns tx, tx+16, …), so
// neighbouring invocations read neighbouring words of the tiles and write
// neighbouring words of C. Per element the k products are summed in
// ascending order from 0.0, as the CPU reference does.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

const BLOCK: u32 = 64u;
const STEP: u32 = 16u;
const THREADS: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<Elem>;
@group(0) @binding(2) var<storage, read> b: array<Elem>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// tile_a[r * STEP + kk]: rows of A's block; tile_b[kk * BLOCK + col].
var<workgroup> tile_a: array<Elem, 1024>;
var<workgroup> tile_b: array<Elem, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m = params.m;
    let n = params.n;
    let k = params.k;
    let tx = lid.x;
    let ty = lid.y;
    let flat = ty * 16u + tx;
    let row0 = wid.y * BLOCK;
    let col0 = wid.x * BLOCK;
    var acc: array<Elem, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = 0.0;
    }
    let steps = (k + STEP - 1u) / STEP;
    for (var s = 0u; s < steps; s = s + 1u) {
        // 1024 elements of each tile, four per invocation.
        for (var l = 0u; l < 4u; l = l + 1u) {
            let e = flat + l * THREADS;
            let ar = row0 + e / STEP;
            let ak = s * STEP + e % STEP;
            var va: Elem = 0.0;
            if (ar < m && ak < k) {
                va = a[ar * k + ak];
            }
            tile_a[e] = va;
            let bk = s * STEP + e / BLOCK;
            let bc = col0 + e % BLOCK;
            var vb: Elem = 0.0;
            if (bk < k && bc < n) {
                vb = b[bk * n + bc];
            }
            tile_b[e] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < STEP; kk = kk + 1u) {
            var av: array<Elem, 4>;
            var bv: array<Elem, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = tile_a[(ty + i * 16u) * STEP + kk];
                bv[i] = tile_b[kk * BLOCK + tx + i * 16u];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + ty + i * 16u;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + tx + j * 16u;
            if (row < m && col < n) {
                c[row * n + col] = f32(acc[i * 4u + j]);
            }
        }
    }
}
