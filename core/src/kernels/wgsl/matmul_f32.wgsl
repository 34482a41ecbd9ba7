// Shoal kernel `matmul_f32`: C = A × B, row-major f32, A is m×k, B is k×n.
// Tiled: each 16×16 workgroup stages a tile of A and of B in workgroup
// memory per step along k, so each input element is read from storage
// once per tile instead of once per output element.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

const TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let m = params.m;
    let n = params.n;
    let k = params.k;
    var acc = 0.0;
    let steps = (k + TILE - 1u) / TILE;
    for (var s = 0u; s < steps; s = s + 1u) {
        let ak = s * TILE + lid.x;
        if (row < m && ak < k) {
            tile_a[lid.y][lid.x] = a[row * k + ak];
        } else {
            tile_a[lid.y][lid.x] = 0.0;
        }
        let bk = s * TILE + lid.y;
        if (col < n && bk < k) {
            tile_b[lid.y][lid.x] = b[bk * n + col];
        } else {
            tile_b[lid.y][lid.x] = 0.0;
        }
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + tile_a[lid.y][i] * tile_b[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < m && col < n) {
        c[row * n + col] = acc;
    }
}
