// Shoal kernel `sha256`: one invocation hashes one fixed-length message.
// Input: `count` messages of `message_len` bytes each, concatenated, read as
// little-endian u32 words (the buffer is zero-padded to a multiple of 4).
// Output: `count` digests of 8 u32 words whose little-endian bytes are the
// standard big-endian SHA-256 digest bytes, so the raw output buffer equals
// the CPU reference byte for byte.

struct Params {
    count: u32,
    message_len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> messages: array<u32>;
@group(0) @binding(2) var<storage, read_write> digests: array<u32>;

var<private> K: array<u32, 64> = array<u32, 64>(
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
);

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn bswap(x: u32) -> u32 {
    return ((x & 0xffu) << 24u) | ((x & 0xff00u) << 8u) | ((x >> 8u) & 0xff00u) | (x >> 24u);
}

// Byte `i` of the message starting at byte `base`, SHA-256 padded: the
// message bytes, then 0x80, then zeros (the length words are set apart).
fn padded_byte(base: u32, i: u32, len: u32) -> u32 {
    if (i < len) {
        let b = base + i;
        return (messages[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
    }
    if (i == len) {
        return 0x80u;
    }
    return 0u;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.y * groups.x * 64u + gid.x;
    if (idx >= params.count) {
        return;
    }
    let len = params.message_len;
    let base = idx * len;
    let nblocks = (len + 9u + 63u) / 64u;
    var h = array<u32, 8>(
        0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
        0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
    );
    var w: array<u32, 64>;
    for (var blk = 0u; blk < nblocks; blk = blk + 1u) {
        for (var t = 0u; t < 16u; t = t + 1u) {
            var word = 0u;
            for (var j = 0u; j < 4u; j = j + 1u) {
                word = (word << 8u) | padded_byte(base, blk * 64u + t * 4u + j, len);
            }
            w[t] = word;
        }
        if (blk == nblocks - 1u) {
            // Message length in bits, big-endian, in the last 8 bytes.
            w[14] = len >> 29u;
            w[15] = len << 3u;
        }
        for (var t = 16u; t < 64u; t = t + 1u) {
            let s0 = rotr(w[t - 15u], 7u) ^ rotr(w[t - 15u], 18u) ^ (w[t - 15u] >> 3u);
            let s1 = rotr(w[t - 2u], 17u) ^ rotr(w[t - 2u], 19u) ^ (w[t - 2u] >> 10u);
            w[t] = w[t - 16u] + s0 + w[t - 7u] + s1;
        }
        var a = h[0];
        var b = h[1];
        var c = h[2];
        var d = h[3];
        var e = h[4];
        var f = h[5];
        var g = h[6];
        var hh = h[7];
        for (var t = 0u; t < 64u; t = t + 1u) {
            let s1 = rotr(e, 6u) ^ rotr(e, 11u) ^ rotr(e, 25u);
            let ch = (e & f) ^ (~e & g);
            let t1 = hh + s1 + ch + K[t] + w[t];
            let s0 = rotr(a, 2u) ^ rotr(a, 13u) ^ rotr(a, 22u);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0 + maj;
            hh = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] = h[0] + a;
        h[1] = h[1] + b;
        h[2] = h[2] + c;
        h[3] = h[3] + d;
        h[4] = h[4] + e;
        h[5] = h[5] + f;
        h[6] = h[6] + g;
        h[7] = h[7] + hh;
    }
    for (var i = 0u; i < 8u; i = i + 1u) {
        digests[idx * 8u + i] = bswap(h[i]);
    }
}
