// Probe: f32 multiply-add throughput (written `a * m + c`, as the kernels
// write theirs, which compilers fuse where the device has FMA). Each invocation advances eight
// independent vec4 chains `iters` times (64 flops per step), so the
// arithmetic units, not latency or memory, bind it. Values converge to 1:
// no denormals, nothing the compiler can fold (`iters` is a parameter).

struct Params {
    iters: u32,
    seed: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.y * groups.x * 256u + gid.x;
    let x = f32((idx + params.seed) & 1023u) * 0.0001;
    var a0 = vec4<f32>(x, x + 0.01, x + 0.02, x + 0.03);
    var a1 = a0 + 0.1;
    var a2 = a0 + 0.2;
    var a3 = a0 + 0.3;
    var a4 = a0 + 0.4;
    var a5 = a0 + 0.5;
    var a6 = a0 + 0.6;
    var a7 = a0 + 0.7;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(0.0001);
    for (var i = 0u; i < params.iters; i = i + 1u) {
        a0 = a0 * m + c;
        a1 = a1 * m + c;
        a2 = a2 * m + c;
        a3 = a3 * m + c;
        a4 = a4 * m + c;
        a5 = a5 * m + c;
        a6 = a6 * m + c;
        a7 = a7 * m + c;
    }
    out[idx] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}
