// Probe: 32-bit integer throughput (add, shift, xor: the operations of
// SHA-256). Each step of a chain is three operations on a vec4<u32>;
// eight chains run side by side.

struct Params {
    iters: u32,
    seed: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.y * groups.x * 256u + gid.x;
    let s = idx ^ params.seed;
    var a0 = vec4<u32>(s, s + 1u, s + 2u, s + 3u);
    var a1 = a0 * 3u;
    var a2 = a0 * 5u;
    var a3 = a0 * 7u;
    var a4 = a0 * 11u;
    var a5 = a0 * 13u;
    var a6 = a0 * 17u;
    var a7 = a0 * 19u;
    let k = vec4<u32>(0x9e3779b9u, 0x7f4a7c15u, 0x6a09e667u, 0xbb67ae85u);
    let r = vec4<u32>(3u);
    for (var i = 0u; i < params.iters; i = i + 1u) {
        a0 = (a0 + k) ^ (a0 >> r);
        a1 = (a1 + k) ^ (a1 >> r);
        a2 = (a2 + k) ^ (a2 >> r);
        a3 = (a3 + k) ^ (a3 >> r);
        a4 = (a4 + k) ^ (a4 >> r);
        a5 = (a5 + k) ^ (a5 >> r);
        a6 = (a6 + k) ^ (a6 >> r);
        a7 = (a7 + k) ^ (a7 >> r);
    }
    out[idx] = ((a0 ^ a1) ^ (a2 ^ a3)) ^ ((a4 ^ a5) ^ (a6 ^ a7));
}
