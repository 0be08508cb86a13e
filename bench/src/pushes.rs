//! Many pushes at once: 64 clients each pushing an image of its own (a
//! config, a 1 MiB layer of new content, a manifest) to a repository of its
//! own, all started together. Every push must succeed; the lines are the
//! images pushed per second and the slowest pushes' latency.

use crate::client::{self, Registry};
use crate::servers::{Binaries, Kind, Server};
use crate::{Args, Goal, Row, Samples, order, random_bytes, stamped};
use std::time::{Duration, Instant};

/// Pushes started together.
pub const CONCURRENT: usize = 64;

/// Size of each image's layer.
const LAYER: usize = 1 << 20;

/// The 99th percentile of `latencies` (nearest rank).
fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    let rank = (latencies.len() * 99).div_ceil(100).max(1);
    latencies[rank - 1]
}

pub async fn lines(args: &Args, bins: &Binaries) -> anyhow::Result<Vec<Row>> {
    eprintln!(
        "{CONCURRENT} concurrent pushes of distinct images (1 MiB layer each), {} repetitions",
        args.reps
    );
    let random = random_bytes(LAYER)?;
    let servers = [
        Server::start(Kind::Distribution, bins, None)?,
        Server::start(Kind::Wharf, bins, None)?,
    ];
    let (mut rate, mut slowest) = (Samples::default(), Samples::default());
    for rep in 0..args.reps {
        for kind in order(rep) {
            let server = servers.iter().find(|s| s.kind == kind).expect("both kinds");
            crate::settle().await?;
            let started = Instant::now();
            let pushes = (0..CONCURRENT).map(|i| {
                // A client of its own, from an address of its own, as 64
                // machines pushing would have.
                let registry =
                    Registry::from_address(server.base(), None, Some(client::client_address(i)));
                let layer = stamped(&random, rep * CONCURRENT + i);
                tokio::spawn(async move {
                    let began = Instant::now();
                    registry?
                        .push_image(&format!("bench/push-{rep}-{i}"), "latest", layer)
                        .await?;
                    anyhow::Ok(began.elapsed())
                })
            });
            let mut latencies = Vec::with_capacity(CONCURRENT);
            for push in futures::future::join_all(pushes.collect::<Vec<_>>()).await {
                latencies.push(push??);
            }
            let took = started.elapsed();
            rate.push(kind, CONCURRENT as f64 / took.as_secs_f64());
            slowest.push(kind, p99(latencies).as_secs_f64() * 1e3);
            eprintln!(
                "  rep {rep} {kind}: {:.0} images/s, p99 {:.0} ms",
                rate.last(kind),
                slowest.last(kind)
            );
        }
    }
    Ok(vec![
        rate.row(
            format!("{CONCURRENT} concurrent pushes of distinct images, throughput"),
            "images/s",
            Goal::FasterBy(1.0),
        ),
        slowest.row(
            format!("{CONCURRENT} concurrent pushes, p99 latency of one push"),
            "ms",
            Goal::TimeAtMost(1.0),
        ),
    ])
}
