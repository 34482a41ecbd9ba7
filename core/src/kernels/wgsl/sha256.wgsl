// Shoal kernel `sha256`: one invocation hashes one fixed-length message.
// Message bytes are read a word at a time (two words and a funnel shift
// where messages are not word-aligned), each once; the 64 rounds of a block
// are unrolled with their constants, over a 16-word schedule kept in
// registers and extended in place every 16 rounds.
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

// The eight working variables of the compression.
struct State {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: u32,
    g: u32,
    h: u32,
}

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn bswap(x: u32) -> u32 {
    return ((x & 0xffu) << 24u) | ((x & 0xff00u) << 8u) | ((x >> 8u) & 0xff00u) | (x >> 24u);
}

// One round with `kw` = K[t] + W[t].
fn round(s: State, kw: u32) -> State {
    let s1 = rotr(s.e, 6u) ^ rotr(s.e, 11u) ^ rotr(s.e, 25u);
    let ch = (s.e & s.f) ^ (~s.e & s.g);
    let t1 = s.h + s1 + ch + kw;
    let s0 = rotr(s.a, 2u) ^ rotr(s.a, 13u) ^ rotr(s.a, 22u);
    let maj = (s.a & s.b) ^ (s.a & s.c) ^ (s.b & s.c);
    return State(t1 + s0 + maj, s.a, s.b, s.c, s.d + t1, s.e, s.f, s.g);
}

fn sig0(x: u32) -> u32 {
    return rotr(x, 7u) ^ rotr(x, 18u) ^ (x >> 3u);
}

fn sig1(x: u32) -> u32 {
    return rotr(x, 17u) ^ rotr(x, 19u) ^ (x >> 10u);
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

// Big-endian word `i / 4` of the padded message: one load where the
// message is word-aligned, two and a funnel shift where not, byte by byte
// only for the word where the message ends.
fn word(base: u32, i: u32, len: u32) -> u32 {
    if (i + 4u <= len) {
        let at = base + i;
        let q = at >> 2u;
        let sh = (at & 3u) * 8u;
        var le = messages[q];
        if (sh != 0u) {
            le = (le >> sh) | (messages[q + 1u] << (32u - sh));
        }
        return bswap(le);
    }
    var w = 0u;
    for (var j = 0u; j < 4u; j = j + 1u) {
        w = (w << 8u) | padded_byte(base, i + j, len);
    }
    return w;
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
    var h = State(0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u);
    for (var blk = 0u; blk < nblocks; blk = blk + 1u) {
        let off = blk * 64u;
        var w0 = word(base, off + 0u, len);
        var w1 = word(base, off + 4u, len);
        var w2 = word(base, off + 8u, len);
        var w3 = word(base, off + 12u, len);
        var w4 = word(base, off + 16u, len);
        var w5 = word(base, off + 20u, len);
        var w6 = word(base, off + 24u, len);
        var w7 = word(base, off + 28u, len);
        var w8 = word(base, off + 32u, len);
        var w9 = word(base, off + 36u, len);
        var w10 = word(base, off + 40u, len);
        var w11 = word(base, off + 44u, len);
        var w12 = word(base, off + 48u, len);
        var w13 = word(base, off + 52u, len);
        var w14 = word(base, off + 56u, len);
        var w15 = word(base, off + 60u, len);
        if (blk == nblocks - 1u) {
            // Message length in bits, big-endian, in the last 8 bytes.
            w14 = len >> 29u;
            w15 = len << 3u;
        }
        var s = h;
        // Rounds 0-15 on the message words, then three times: extend the
        // schedule (W[t] = W[t-16] + σ0(W[t-15]) + W[t-7] + σ1(W[t-2])) and run 16 more.
        s = round(s, 0x428a2f98u + w0);
        s = round(s, 0x71374491u + w1);
        s = round(s, 0xb5c0fbcfu + w2);
        s = round(s, 0xe9b5dba5u + w3);
        s = round(s, 0x3956c25bu + w4);
        s = round(s, 0x59f111f1u + w5);
        s = round(s, 0x923f82a4u + w6);
        s = round(s, 0xab1c5ed5u + w7);
        s = round(s, 0xd807aa98u + w8);
        s = round(s, 0x12835b01u + w9);
        s = round(s, 0x243185beu + w10);
        s = round(s, 0x550c7dc3u + w11);
        s = round(s, 0x72be5d74u + w12);
        s = round(s, 0x80deb1feu + w13);
        s = round(s, 0x9bdc06a7u + w14);
        s = round(s, 0xc19bf174u + w15);
        w0 = w0 + sig0(w1) + w9 + sig1(w14);
        w1 = w1 + sig0(w2) + w10 + sig1(w15);
        w2 = w2 + sig0(w3) + w11 + sig1(w0);
        w3 = w3 + sig0(w4) + w12 + sig1(w1);
        w4 = w4 + sig0(w5) + w13 + sig1(w2);
        w5 = w5 + sig0(w6) + w14 + sig1(w3);
        w6 = w6 + sig0(w7) + w15 + sig1(w4);
        w7 = w7 + sig0(w8) + w0 + sig1(w5);
        w8 = w8 + sig0(w9) + w1 + sig1(w6);
        w9 = w9 + sig0(w10) + w2 + sig1(w7);
        w10 = w10 + sig0(w11) + w3 + sig1(w8);
        w11 = w11 + sig0(w12) + w4 + sig1(w9);
        w12 = w12 + sig0(w13) + w5 + sig1(w10);
        w13 = w13 + sig0(w14) + w6 + sig1(w11);
        w14 = w14 + sig0(w15) + w7 + sig1(w12);
        w15 = w15 + sig0(w0) + w8 + sig1(w13);
        s = round(s, 0xe49b69c1u + w0);
        s = round(s, 0xefbe4786u + w1);
        s = round(s, 0x0fc19dc6u + w2);
        s = round(s, 0x240ca1ccu + w3);
        s = round(s, 0x2de92c6fu + w4);
        s = round(s, 0x4a7484aau + w5);
        s = round(s, 0x5cb0a9dcu + w6);
        s = round(s, 0x76f988dau + w7);
        s = round(s, 0x983e5152u + w8);
        s = round(s, 0xa831c66du + w9);
        s = round(s, 0xb00327c8u + w10);
        s = round(s, 0xbf597fc7u + w11);
        s = round(s, 0xc6e00bf3u + w12);
        s = round(s, 0xd5a79147u + w13);
        s = round(s, 0x06ca6351u + w14);
        s = round(s, 0x14292967u + w15);
        w0 = w0 + sig0(w1) + w9 + sig1(w14);
        w1 = w1 + sig0(w2) + w10 + sig1(w15);
        w2 = w2 + sig0(w3) + w11 + sig1(w0);
        w3 = w3 + sig0(w4) + w12 + sig1(w1);
        w4 = w4 + sig0(w5) + w13 + sig1(w2);
        w5 = w5 + sig0(w6) + w14 + sig1(w3);
        w6 = w6 + sig0(w7) + w15 + sig1(w4);
        w7 = w7 + sig0(w8) + w0 + sig1(w5);
        w8 = w8 + sig0(w9) + w1 + sig1(w6);
        w9 = w9 + sig0(w10) + w2 + sig1(w7);
        w10 = w10 + sig0(w11) + w3 + sig1(w8);
        w11 = w11 + sig0(w12) + w4 + sig1(w9);
        w12 = w12 + sig0(w13) + w5 + sig1(w10);
        w13 = w13 + sig0(w14) + w6 + sig1(w11);
        w14 = w14 + sig0(w15) + w7 + sig1(w12);
        w15 = w15 + sig0(w0) + w8 + sig1(w13);
        s = round(s, 0x27b70a85u + w0);
        s = round(s, 0x2e1b2138u + w1);
        s = round(s, 0x4d2c6dfcu + w2);
        s = round(s, 0x53380d13u + w3);
        s = round(s, 0x650a7354u + w4);
        s = round(s, 0x766a0abbu + w5);
        s = round(s, 0x81c2c92eu + w6);
        s = round(s, 0x92722c85u + w7);
        s = round(s, 0xa2bfe8a1u + w8);
        s = round(s, 0xa81a664bu + w9);
        s = round(s, 0xc24b8b70u + w10);
        s = round(s, 0xc76c51a3u + w11);
        s = round(s, 0xd192e819u + w12);
        s = round(s, 0xd6990624u + w13);
        s = round(s, 0xf40e3585u + w14);
        s = round(s, 0x106aa070u + w15);
        w0 = w0 + sig0(w1) + w9 + sig1(w14);
        w1 = w1 + sig0(w2) + w10 + sig1(w15);
        w2 = w2 + sig0(w3) + w11 + sig1(w0);
        w3 = w3 + sig0(w4) + w12 + sig1(w1);
        w4 = w4 + sig0(w5) + w13 + sig1(w2);
        w5 = w5 + sig0(w6) + w14 + sig1(w3);
        w6 = w6 + sig0(w7) + w15 + sig1(w4);
        w7 = w7 + sig0(w8) + w0 + sig1(w5);
        w8 = w8 + sig0(w9) + w1 + sig1(w6);
        w9 = w9 + sig0(w10) + w2 + sig1(w7);
        w10 = w10 + sig0(w11) + w3 + sig1(w8);
        w11 = w11 + sig0(w12) + w4 + sig1(w9);
        w12 = w12 + sig0(w13) + w5 + sig1(w10);
        w13 = w13 + sig0(w14) + w6 + sig1(w11);
        w14 = w14 + sig0(w15) + w7 + sig1(w12);
        w15 = w15 + sig0(w0) + w8 + sig1(w13);
        s = round(s, 0x19a4c116u + w0);
        s = round(s, 0x1e376c08u + w1);
        s = round(s, 0x2748774cu + w2);
        s = round(s, 0x34b0bcb5u + w3);
        s = round(s, 0x391c0cb3u + w4);
        s = round(s, 0x4ed8aa4au + w5);
        s = round(s, 0x5b9cca4fu + w6);
        s = round(s, 0x682e6ff3u + w7);
        s = round(s, 0x748f82eeu + w8);
        s = round(s, 0x78a5636fu + w9);
        s = round(s, 0x84c87814u + w10);
        s = round(s, 0x8cc70208u + w11);
        s = round(s, 0x90befffau + w12);
        s = round(s, 0xa4506cebu + w13);
        s = round(s, 0xbef9a3f7u + w14);
        s = round(s, 0xc67178f2u + w15);
        h = State(h.a + s.a, h.b + s.b, h.c + s.c, h.d + s.d, h.e + s.e, h.f + s.f, h.g + s.g, h.h + s.h);
    }
    let o = idx * 8u;
    digests[o] = bswap(h.a);
    digests[o + 1u] = bswap(h.b);
    digests[o + 2u] = bswap(h.c);
    digests[o + 3u] = bswap(h.d);
    digests[o + 4u] = bswap(h.e);
    digests[o + 5u] = bswap(h.f);
    digests[o + 6u] = bswap(h.g);
    digests[o + 7u] = bswap(h.h);
}
