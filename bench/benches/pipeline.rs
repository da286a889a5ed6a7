//! ns/packet of `pipeline::process` for each path, over batches of 64 frames of the example PE.
//! Run: `cargo bench -p carrier-bench --bench pipeline`. Results: bench/RESULTS.md.

use carrier_common::PortId;
use carrier_dataplane::pipeline::{process, Batch, Verdict, VecFrame, VecPool, Worker};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn pipeline(c: &mut Criterion) {
    let tables = carrier_bench::example_tables();
    let mut group = c.benchmark_group("pipeline");
    for path in carrier_bench::paths() {
        let frames: Vec<VecFrame> = path.frames.iter().map(|f| VecFrame::new(f)).collect();
        let mut worker = Worker::default();
        // Sanity: the path really forwards (or replies); a benchmark of drops would mislead.
        let mut check = Batch::default();
        for f in &frames {
            check.push(f.clone(), PortId(path.ingress));
        }
        process(&tables, &mut check, &mut worker, &mut VecPool);
        assert!(
            check.packets.iter().all(|p| matches!(p.verdict, Verdict::Forward(_) | Verdict::Reply)),
            "{}: {:?}",
            path.name,
            check.packets.iter().map(|p| p.verdict).collect::<Vec<_>>()
        );
        group.throughput(Throughput::Elements(frames.len() as u64));
        group.bench_function(path.name, |b| {
            b.iter_batched_ref(
                || {
                    let mut batch = Batch::default();
                    for f in &frames {
                        batch.push(f.clone(), PortId(path.ingress));
                    }
                    batch
                },
                |batch| process(&tables, batch, &mut worker, &mut VecPool),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
