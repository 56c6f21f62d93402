//! mail-bench: load generator for the figures in BENCHMARKS.md.
//!
//! `mail-bench store-deliver` streams 4 KiB deliveries into a running
//! mailbox-store over gRPC from N concurrent workers and reports
//! deliveries/s and latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mailbox_api::{CallAuth, pb};

#[derive(Parser)]
#[command(about = "Benchmarks against a running mail system")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Deliveries/s into the store through gRPC (Delivery.Deliver).
    StoreDeliver {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        store: String,
        /// File with the store's service secret (e.g. data/store.secret).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::StoreDeliver {
            store,
            secret_file,
            count,
            concurrency,
            size,
        } => store_deliver(&store, secret_file, count, concurrency, size).await,
    }
}

async fn store_deliver(
    uri: &str,
    secret_file: Option<PathBuf>,
    count: usize,
    concurrency: usize,
    size: usize,
) -> anyhow::Result<()> {
    let secret = secret_file
        .map(|p| std::fs::read_to_string(&p).with_context(|| format!("{}", p.display())))
        .transpose()?
        .map(|s| s.trim().to_string());
    let auth = CallAuth::new(secret.as_deref())?;
    let channel = mailbox_api::channel(uri)?;
    let mut admin = mailbox_api::admin_client(channel.clone(), auth.clone());
    let rcpt = "bench@bench.test";
    // Idempotent setup: existing domain/account are fine.
    let _ = admin
        .add_domain(pb::AddDomainRequest {
            name: "bench.test".into(),
        })
        .await;
    let _ = admin
        .add_account(pb::AddAccountRequest {
            address: rcpt.into(),
            password: "bench-password".into(),
            quota_bytes: 0,
        })
        .await;
    let body = Arc::new(message(size));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let mut client = mailbox_api::delivery_client(channel.clone(), auth.clone());
        let (body, next, run) = (body.clone(), next.clone(), run.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                let chunks = vec![
                    pb::DeliverChunk {
                        part: Some(pb::deliver_chunk::Part::Header(pb::DeliverHeader {
                            delivery_id: format!("{run}-{i}"),
                            envelope_from: "load@bench.test".into(),
                            recipients: vec![rcpt.into()],
                            received_at: 1_700_000_000,
                            trace_headers: format!("X-Bench: {i}\r\n").into_bytes(),
                            size_hint: body.len() as u64,
                        })),
                    },
                    pb::DeliverChunk {
                        part: Some(pb::deliver_chunk::Part::Data(body.to_vec())),
                    },
                ];
                client.deliver(tokio_stream::iter(chunks)).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::with_capacity(count);
    for w in workers {
        lat.extend(w.await??);
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "store-deliver: {count} deliveries of {size} B, concurrency {concurrency}: \
         {:.1} s, {:.0} deliveries/s, latency p50 {:?} p99 {:?}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        pct(0.50).copied().unwrap_or(Duration::ZERO),
        pct(0.99).copied().unwrap_or(Duration::ZERO),
    );
    Ok(())
}

/// A plain-text message of about `size` bytes with unique-looking headers.
fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: Load <load@bench.test>\r\nTo: bench@bench.test\r\n\
Subject: benchmark message\r\nMessage-ID: <bench@bench.test>\r\n\
Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"
        .to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}
