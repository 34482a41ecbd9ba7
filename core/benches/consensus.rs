//! Consensus overhead: rounds finalized by 4 and 7 in-process nodes on a
//! network with zero delay, and the CPU time each round costs.
//!
//! `cargo bench -p shoal-core --bench consensus`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use shoal_core::consensus::sim::{Net, Role};
use shoal_core::Millis;

const SIMULATED: Millis = Millis(60_000);

fn rounds(n: usize) -> u64 {
    let mut net = Net::new(7, &vec![Role::Honest; n], 0, (0, 0));
    net.start();
    net.run(SIMULATED);
    net.min_honest_round()
}

fn consensus(c: &mut Criterion) {
    let mut g = c.benchmark_group("consensus");
    g.sample_size(10);
    for n in [4usize, 7] {
        let r = rounds(n);
        let t = Instant::now();
        black_box(rounds(n));
        let wall = t.elapsed();
        println!(
            "{n} nodes, zero delay: {r} rounds in {} s simulated → round latency {} ms (simulated); {:.1} µs CPU per round for all {n} machines together ({:.0} rounds/s of CPU)",
            SIMULATED.0 / 1000,
            SIMULATED.0 / r.max(1),
            wall.as_secs_f64() * 1e6 / r.max(1) as f64,
            r as f64 / wall.as_secs_f64()
        );
        g.bench_function(format!("{n}_nodes_one_simulated_minute"), |b| b.iter(|| black_box(rounds(n))));
    }
    g.finish();
}

criterion_group!(benches, consensus);
criterion_main!(benches);
