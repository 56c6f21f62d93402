//! mail-bench: load generator for the figures in BENCHMARKS.md.
//!
//! `mail-bench store-deliver` streams 4 KiB deliveries into a running
//! mailbox-store over gRPC from N concurrent workers and reports
//! deliveries/s and latency percentiles.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mailbox_api::{CallAuth, pb};

mod change_cost;
mod sync;
mod timed;

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
    /// IMAP on a large mailbox: SELECT, UID FETCH 1:* (FLAGS), UID SEARCH
    /// UNSEEN, and FETCH of 100 full bodies, timed.
    ImapLarge {
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: String,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        store: String,
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Messages in the mailbox (account big<N>@bench.test).
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Deliver the messages first.
        #[arg(long)]
        setup: bool,
    },
    /// Many IDLE sessions on one gateway: `accounts` accounts
    /// (idle<N>@bench.test) with `messages` messages each, `per_account`
    /// sessions on each that log in, SELECT INBOX and IDLE; reports the
    /// gateway's resident memory per session, then delivers one message to
    /// every account at once, `rounds` times, and reports how long each
    /// session took to see its EXISTS.
    ImapIdle {
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: String,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        store: String,
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// PID of the imap-gateway process, to read its VmRSS.
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 100)]
        accounts: usize,
        #[arg(long, default_value_t = 100)]
        per_account: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Create the accounts and deliver the messages first.
        #[arg(long)]
        setup: bool,
    },
    /// An IMAP mix: N clients loop over SELECT, FETCH, STORE, SEARCH,
    /// APPEND and a short IDLE for a while; reports commands/s.
    ImapMix {
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: String,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value = "big10000@bench.test")]
        account: String,
    },
    /// Many IMAP sessions on a few accounts, each checking every response
    /// against the state a client keeps; exits non-zero on any violation.
    ImapStress {
        /// An IMAP address (plaintext port on a trusted network); repeat
        /// for several gateways, sessions go round-robin.
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: Vec<std::net::SocketAddr>,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        /// Accounts stress0@bench.test .. stress<N-1>@bench.test.
        #[arg(long, default_value_t = 20)]
        accounts: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// One long session per client (no LOGOUT) instead of a login per
        /// session.
        #[arg(long)]
        persistent: bool,
        /// Messages per mailbox the APPEND/EXPUNGE mix keeps.
        #[arg(long, default_value_t = 30)]
        target: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Violations printed with their transcript.
        #[arg(long, default_value_t = 5)]
        show: usize,
        /// Stop at the first violation (and exit 1) instead of running the
        /// whole time.
        #[arg(long)]
        fail_fast: bool,
        /// Create the domain and accounts first, through this store.
        #[arg(long)]
        setup_store: Option<String>,
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// A large mailbox of varied, threaded messages: QRESYNC resync time
    /// after another client changed 1,000 messages and expunged 100
    /// (checked exact), and SORT / THREAD times. IMAP only, so it runs
    /// against any server.
    ImapSync {
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: String,
        #[arg(long, default_value = "sync@bench.test")]
        user: String,
        #[arg(long, default_value = "bench-password")]
        password: String,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Name printed on every line (ours, dovecot).
        #[arg(long, default_value = "imap")]
        label: String,
        /// Create the account and deliver the messages first, through this
        /// store.
        #[arg(long)]
        setup_store: Option<String>,
        #[arg(long)]
        secret_file: Option<PathBuf>,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 2048)]
        size: usize,
        /// With --setup-store: also write the messages as Maildir files
        /// here (for another server).
        #[arg(long)]
        maildir: Option<PathBuf>,
        /// With --setup-store: deliver one at a time, so that UIDs follow
        /// the messages' order exactly (as the Maildir's): the two
        /// servers' answers can then be compared line by line.
        #[arg(long)]
        ordered: bool,
    },
    /// What one small change costs on a mailbox (issue #24): p50/p90 of
    /// UID STORE +FLAGS (\Seen) on one message, NOOP after one delivery
    /// (until its EXISTS), EXPUNGE of one message and UID FETCH FLAGS of
    /// the last 50, one session, round after round. IMAP only (delivery
    /// through our store or LMTP), so it runs against any server.
    ImapChangeCost {
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "bench-password")]
        password: String,
        /// Name printed on every line (ours, dovecot).
        #[arg(long, default_value = "imap")]
        label: String,
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        /// IDLE sessions on the same mailbox while the rounds run.
        #[arg(long, default_value_t = 2)]
        idlers: usize,
        /// Deliver each round's message through this store (Deliver RPC).
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Deliver each round's message over LMTP here instead.
        #[arg(long)]
        lmtp: Option<String>,
        /// Create the account and deliver `messages` messages first,
        /// through --store (and write them to --maildir), then stop.
        #[arg(long)]
        setup: bool,
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        #[arg(long, default_value_t = 2048)]
        size: usize,
        #[arg(long)]
        maildir: Option<PathBuf>,
    },
    /// Acknowledged -> visible under a burst (the e2e `burst` test's load:
    /// 12 messages of 1-18 MB at once and 3 senders of small ones over
    /// SMTP, a fresh IMAP session every 150 ms and POP3 sessions back to
    /// back): for every 250, how long until the first IMAP session and the
    /// first POP3 STAT begun after it ended showing it; p50/p99/max over
    /// all rounds. Each round uses a new account burst<N>-<id>@bench.test,
    /// created through the store. Exits non-zero if a session failed or a
    /// message was not shown.
    Burst {
        #[arg(long, default_value = "127.0.0.1:1125")]
        smtp: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:1143")]
        imap: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:1110")]
        pop3: std::net::SocketAddr,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        store: String,
        #[arg(long)]
        secret_file: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// POP3 download rate: N clients (one account each) RETR every message.
    Pop3 {
        #[arg(long, default_value = "127.0.0.1:1110")]
        pop3: String,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        store: String,
        #[arg(long)]
        secret_file: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Mean message size; sizes vary from a quarter of it to 1.75 times.
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Deliver the messages first (accounts pop<N>@bench.test).
        #[arg(long)]
        setup: bool,
        /// With --setup: also write the same messages as Maildir files
        /// under DIR/pop<N>/new (to load another server with them).
        #[arg(long)]
        maildir: Option<PathBuf>,
        /// With --setup: `repeated` bodies repeat one line (they compress
        /// about a hundredfold); `mixed` bodies are two thirds text of
        /// varied words and one third a base64 attachment of random bytes,
        /// compressing about as real mail does.
        #[arg(long, default_value = "repeated")]
        body: BodyKind,
    },
}

/// What `mail-bench pop3 --setup` puts in its messages' bodies.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BodyKind {
    Repeated,
    Mixed,
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
        Cmd::ImapSync {
            imap,
            user,
            password,
            rounds,
            label,
            setup_store,
            secret_file,
            messages,
            size,
            maildir,
            ordered,
        } => {
            if let Some(store) = setup_store {
                let auth = auth(secret_file)?;
                sync::setup(&store, &auth, &user, messages, size, maildir, ordered).await?;
                return Ok(());
            }
            sync::run(&imap, &user, &password, rounds, &label).await
        }
        Cmd::ImapChangeCost {
            imap,
            user,
            password,
            label,
            rounds,
            idlers,
            store,
            secret_file,
            lmtp,
            setup,
            messages,
            size,
            maildir,
        } => {
            let delivery = match (store, lmtp) {
                (Some(uri), None) => change_cost::Delivery::Store {
                    uri,
                    auth: auth(secret_file)?,
                },
                (None, Some(addr)) if !setup => change_cost::Delivery::Lmtp(addr),
                _ => anyhow::bail!("give --store (with --setup too), or --lmtp"),
            };
            if setup {
                let change_cost::Delivery::Store { uri, auth } = &delivery else {
                    anyhow::bail!("--setup needs --store");
                };
                return sync::setup(uri, auth, &user, messages, size, maildir, false).await;
            }
            change_cost::run(change_cost::Config {
                imap,
                user,
                password,
                label,
                rounds,
                idlers,
                delivery,
            })
            .await
        }
        Cmd::ImapLarge {
            imap,
            store,
            secret_file,
            messages,
            size,
            setup,
        } => {
            let account = format!("big{messages}@bench.test");
            if setup {
                imap_setup(&store, secret_file, &account, messages, size).await?;
            }
            imap_large(&imap, &account).await
        }
        Cmd::ImapIdle {
            imap,
            store,
            secret_file,
            pid,
            accounts,
            per_account,
            messages,
            rounds,
            setup,
        } => {
            let names: Vec<String> = (0..accounts)
                .map(|i| format!("idle{i}@bench.test"))
                .collect();
            let auth = auth(secret_file)?;
            if setup {
                idle_setup(&store, &auth, &names, messages).await?;
            }
            imap_idle(&imap, &store, &auth, pid, &names, per_account, rounds).await
        }
        Cmd::ImapMix {
            imap,
            clients,
            seconds,
            account,
        } => imap_mix(&imap, clients, seconds, &account).await,
        Cmd::ImapStress {
            imap,
            clients,
            accounts,
            seconds,
            persistent,
            target,
            seed,
            show,
            fail_fast,
            setup_store,
            secret_file,
        } => {
            let accounts: Vec<(String, String)> = (0..accounts)
                .map(|i| {
                    (
                        format!("stress{i}@bench.test"),
                        "bench-password".to_string(),
                    )
                })
                .collect();
            if let Some(uri) = setup_store {
                create_accounts(&uri, &auth(secret_file)?, &accounts).await?;
            }
            let report = mail_bench::imap_stress::run(mail_bench::imap_stress::Config {
                gateways: imap,
                accounts,
                clients,
                duration: Duration::from_secs(seconds),
                persistent,
                target,
                seed,
                fail_fast,
            })
            .await;
            print!("{}", report.render(show));
            if !report.violations.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Burst {
            smtp,
            imap,
            pop3,
            store,
            secret_file,
            rounds,
        } => burst(smtp, imap, pop3, &store, &auth(secret_file)?, rounds).await,
        Cmd::Pop3 {
            pop3,
            store,
            secret_file,
            clients,
            messages,
            size,
            setup,
            maildir,
            body,
        } => {
            if setup {
                pop3_setup(&store, secret_file, clients, messages, size, maildir, body).await?;
            }
            pop3_bench(&pop3, clients).await
        }
    }
}

fn auth(secret_file: Option<PathBuf>) -> anyhow::Result<CallAuth> {
    let secret = secret_file
        .map(|p| std::fs::read_to_string(&p).with_context(|| format!("{}", p.display())))
        .transpose()?
        .map(|s| s.trim().to_string());
    Ok(CallAuth::new(secret.as_deref())?)
}

/// Creates `bench.test` and the given accounts (existing ones are kept).
async fn create_accounts(
    uri: &str,
    auth: &CallAuth,
    accounts: &[(String, String)],
) -> anyhow::Result<()> {
    let channel = mail_bench::store_channel(uri)?;
    let mut admin = mailbox_api::admin_client(channel, auth.clone());
    let _ = admin
        .add_domain(pb::AddDomainRequest {
            name: "bench.test".into(),
        })
        .await;
    for (address, password) in accounts {
        let _ = admin
            .add_account(pb::AddAccountRequest {
                address: address.clone(),
                password: password.clone(),
                quota_bytes: 0,
            })
            .await;
    }
    Ok(())
}

/// `mail-bench burst`: see [`Cmd::Burst`].
async fn burst(
    smtp: std::net::SocketAddr,
    imap: std::net::SocketAddr,
    pop3: std::net::SocketAddr,
    store: &str,
    auth: &CallAuth,
    rounds: usize,
) -> anyhow::Result<()> {
    use mail_bench::burst::{self, Config, quantile};
    let show = |v: &[Duration]| {
        format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            quantile(v, 0.5).as_secs_f64() * 1e3,
            quantile(v, 0.99).as_secs_f64() * 1e3,
            quantile(v, 1.0).as_secs_f64() * 1e3
        )
    };
    let (mut all_imap, mut all_pop3, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let user = format!(
            "burst{round}-{}@bench.test",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let password = "bench-password".to_string();
        create_accounts(store, auth, &[(user.clone(), password.clone())]).await?;
        // A cold login (argon2) is not what this measures.
        burst::imap_inbox(imap, &user, &password)
            .await
            .map_err(|e| anyhow::anyhow!("IMAP warm-up: {e}"))?;
        burst::pop3_session(pop3, &user, &password)
            .await
            .map_err(|e| anyhow::anyhow!("POP3 warm-up: {e}"))?;
        let report = burst::run(&Config::new(smtp, imap, pop3, &user, &password)).await;
        let (mut i, mut p) = (Vec::new(), Vec::new());
        for ((id, _), (imap_lat, pop3_lat)) in report.acks.iter().zip(report.latencies()) {
            match imap_lat {
                Some(d) => i.push(d),
                None => problems.push(format!("round {round}: {id} not shown over IMAP")),
            }
            match pop3_lat {
                Some(d) => p.push(d),
                None => problems.push(format!("round {round}: {id} not counted by POP3 STAT")),
            }
        }
        problems.extend(report.errors.iter().map(|e| format!("round {round}: {e}")));
        let refused = report
            .pop3
            .iter()
            .filter(|c| matches!(c.seen, burst::Pop3Seen::InUse(_)))
            .count();
        i.sort();
        p.sort();
        println!(
            "round {round}: {} acknowledged ({} large), {} IMAP and {} POP3 sessions \
             ({refused} refused [IN-USE]); IMAP {}; POP3 {}",
            report.acks.len(),
            report.large_codes.iter().filter(|(_, c)| *c == 250).count(),
            report.imap.len(),
            report.pop3.len(),
            show(&i),
            show(&p)
        );
        all_imap.extend(i);
        all_pop3.extend(p);
    }
    all_imap.sort();
    all_pop3.sort();
    println!(
        "all {rounds} rounds, {} messages: 250 -> shown by the first session begun after it: \
         IMAP {}; POP3 STAT {}",
        all_imap.len().max(all_pop3.len()),
        show(&all_imap),
        show(&all_pop3)
    );
    if !problems.is_empty() {
        anyhow::bail!("{} problem(s): {problems:?}", problems.len());
    }
    Ok(())
}

async fn pop3_setup(
    uri: &str,
    secret_file: Option<PathBuf>,
    clients: usize,
    messages: usize,
    size: usize,
    maildir: Option<PathBuf>,
    kind: BodyKind,
) -> anyhow::Result<()> {
    let auth = auth(secret_file)?;
    let channel = mail_bench::store_channel(uri)?;
    let mut admin = mailbox_api::admin_client(channel.clone(), auth.clone());
    let _ = admin
        .add_domain(pb::AddDomainRequest {
            name: "bench.test".into(),
        })
        .await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let rcpt = format!("pop{c}@bench.test");
        let _ = admin
            .add_account(pb::AddAccountRequest {
                address: rcpt.clone(),
                password: "bench-password".into(),
                quota_bytes: 0,
            })
            .await;
        let dir = maildir.as_ref().map(|d| d.join(format!("pop{c}")));
        if let Some(d) = &dir {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(d.join(sub))?;
            }
        }
        let mut d = mailbox_api::delivery_client(channel.clone(), auth.clone());
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..messages {
                // Sizes spread from size/4 to 7*size/4 (mean: size).
                let spread = (i * 7919 + c * 104_729) % (size * 3 / 2).max(1);
                let body = match kind {
                    BodyKind::Repeated => message(size / 4 + spread),
                    BodyKind::Mixed => mixed_message(size / 4 + spread, (c * 1_000_003 + i) as u64),
                };
                let trace = format!("X-Bench: {c}-{i}\r\n").into_bytes();
                if let Some(dir) = &dir {
                    let mut full = trace.clone();
                    full.extend_from_slice(&body);
                    std::fs::write(
                        dir.join(format!("new/{}.{run}.{i}.bench", 1_700_000_000 + i)),
                        full,
                    )?;
                }
                let chunks = deliver_chunks(format!("{run}-{c}-{i}"), rcpt.clone(), trace, body);
                d.deliver(tokio_stream::iter(chunks)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("setup: {clients} accounts x {messages} messages, mean {size} B");
    Ok(())
}

async fn pop3_bench(addr: &str, clients: usize) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(&addr).await?;
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            let read_line = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
                                   line: &mut Vec<u8>|
                   -> anyhow::Result<()> {
                line.clear();
                r.read_until(b'\n', line).await?;
                anyhow::ensure!(!line.is_empty(), "connection closed");
                Ok(())
            };
            read_line(&mut r, &mut line).await?;
            let login_started = Instant::now();
            w.write_all(
                format!("USER pop{c}@bench.test\r\nPASS bench-password\r\nSTAT\r\n").as_bytes(),
            )
            .await?;
            read_line(&mut r, &mut line).await?;
            read_line(&mut r, &mut line).await?;
            anyhow::ensure!(
                line.starts_with(b"+OK"),
                "login: {}",
                String::from_utf8_lossy(&line)
            );
            read_line(&mut r, &mut line).await?;
            let login = login_started.elapsed();
            let count: usize = String::from_utf8_lossy(&line)
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let (mut msgs, mut bytes) = (0usize, 0usize);
            // Pipelined RETRs in windows of 16.
            let mut next = 1;
            while next <= count {
                let end = (next + 16).min(count + 1);
                let mut batch = String::new();
                for n in next..end {
                    batch.push_str(&format!("RETR {n}\r\n"));
                }
                w.write_all(batch.as_bytes()).await?;
                for _ in next..end {
                    read_line(&mut r, &mut line).await?;
                    anyhow::ensure!(
                        line.starts_with(b"+OK"),
                        "RETR: {}",
                        String::from_utf8_lossy(&line)
                    );
                    loop {
                        read_line(&mut r, &mut line).await?;
                        if line == b".\r\n" {
                            break;
                        }
                        bytes += line.len();
                    }
                    msgs += 1;
                }
                next = end;
            }
            w.write_all(b"QUIT\r\n").await?;
            Ok::<_, anyhow::Error>((msgs, bytes, login))
        }));
    }
    let (mut msgs, mut bytes, mut logins) = (0, 0, Vec::new());
    for t in tasks {
        let (m, b, l) = t.await??;
        msgs += m;
        bytes += b;
        logins.push(l);
    }
    let secs = start.elapsed().as_secs_f64();
    logins.sort();
    println!(
        "pop3: {clients} clients, {msgs} messages RETR'd, {:.1} MB in {secs:.2} s: {:.0} messages/s, {:.1} MB/s; login+STAT p50 {:.1} ms",
        bytes as f64 / 1e6,
        msgs as f64 / secs,
        bytes as f64 / 1e6 / secs,
        logins
            .get(logins.len() / 2)
            .map_or(0.0, |l| l.as_secs_f64() * 1e3)
    );
    Ok(())
}

async fn store_deliver(
    uri: &str,
    secret_file: Option<PathBuf>,
    count: usize,
    concurrency: usize,
    size: usize,
) -> anyhow::Result<()> {
    let auth = auth(secret_file)?;
    let channel = mail_bench::store_channel(uri)?;
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
                let chunks = deliver_chunks(
                    format!("{run}-{i}"),
                    rcpt,
                    format!("X-Bench: {i}\r\n").into_bytes(),
                    body.to_vec(),
                );
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

/// A multipart message of about `size` bytes: two thirds plain text of
/// words drawn by a small PRNG seeded with `seed`, one third a base64
/// attachment of pseudo-random bytes (incompressible), so that it
/// compresses about as real mail does rather than a hundredfold.
fn mixed_message(size: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "of", "and", "project", "status", "meeting", "report", "budget", "team", "review",
        "please", "attached", "find", "schedule", "thanks", "regards", "customer", "order",
        "invoice", "delivery", "next", "week", "monday", "update", "question", "about", "server",
        "release", "version", "change", "request", "approved", "pending", "details", "contract",
        "quarter", "numbers", "sales", "support", "ticket", "closed", "opened", "tomorrow",
    ];
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut m = format!(
        "From: Load <load@bench.test>\r\nTo: bench@bench.test\r\n\
Subject: benchmark message {seed}\r\nMessage-ID: <bench-{seed}@bench.test>\r\n\
Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    let text_end = size * 2 / 3;
    let mut line = 0;
    while m.len() < text_end {
        let w = WORDS[(next() % WORDS.len() as u64) as usize];
        m.extend_from_slice(w.as_bytes());
        line += w.len() + 1;
        if line > 70 {
            m.extend_from_slice(b"\r\n");
            line = 0;
        } else {
            m.push(b' ');
        }
    }
    m.extend_from_slice(
        b"\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n",
    );
    while m.len() + 78 + 8 <= size {
        for _ in 0..76 {
            m.push(B64[(next() % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

async fn imap_setup(
    uri: &str,
    secret_file: Option<PathBuf>,
    account: &str,
    messages: usize,
    size: usize,
) -> anyhow::Result<()> {
    let auth = auth(secret_file)?;
    let channel = mail_bench::store_channel(uri)?;
    let mut admin = mailbox_api::admin_client(channel.clone(), auth.clone());
    let _ = admin
        .add_domain(pb::AddDomainRequest {
            name: "bench.test".into(),
        })
        .await;
    let _ = admin
        .add_account(pb::AddAccountRequest {
            address: account.into(),
            password: "bench-password".into(),
            quota_bytes: 0,
        })
        .await;
    let body = Arc::new(message(size));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..16 {
        let mut d = mailbox_api::delivery_client(channel.clone(), auth.clone());
        let (body, next, run, account) =
            (body.clone(), next.clone(), run.clone(), account.to_string());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= messages {
                    return Ok::<_, anyhow::Error>(());
                }
                let chunks = deliver_chunks(
                    format!("{run}-{i}"),
                    account.clone(),
                    format!("X-Bench: {i}\r\n").into_bytes(),
                    body.to_vec(),
                );
                d.deliver(tokio_stream::iter(chunks)).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    println!(
        "setup: {messages} messages into {account} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One IMAP command on a raw connection; returns (response bytes, time).
async fn imap_cmd(
    r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    tag: &str,
    cmd: &str,
) -> anyhow::Result<(usize, Duration)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let start = Instant::now();
    w.write_all(format!("{tag} {cmd}\r\n").as_bytes()).await?;
    let mut total = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).await?;
        anyhow::ensure!(n > 0, "connection closed");
        total += n;
        // A literal follows: read it whole.
        if line.ends_with(b"}\r\n")
            && let Some(open) = line.iter().rposition(|&b| b == b'{')
        {
            let len: usize = std::str::from_utf8(&line[open + 1..line.len() - 3])?
                .trim_end_matches('+')
                .parse()?;
            let mut buf = vec![0u8; len];
            r.read_exact(&mut buf).await?;
            total += len;
            continue;
        }
        if line.starts_with(format!("{tag} ").as_bytes()) {
            anyhow::ensure!(
                line.starts_with(format!("{tag} OK").as_bytes()),
                "{cmd}: {}",
                String::from_utf8_lossy(&line)
            );
            return Ok((total, start.elapsed()));
        }
    }
}

async fn imap_large(addr: &str, account: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (r, mut w) = s.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut greeting = String::new();
    r.read_line(&mut greeting).await?;
    imap_cmd(
        &mut r,
        &mut w,
        "a",
        &format!("LOGIN {account} bench-password"),
    )
    .await?;
    let (_, select) = imap_cmd(&mut r, &mut w, "b", "SELECT INBOX").await?;
    let (flags_bytes, flags) = imap_cmd(&mut r, &mut w, "c", "UID FETCH 1:* (FLAGS)").await?;
    let (_, search) = imap_cmd(&mut r, &mut w, "d", "UID SEARCH UNSEEN").await?;
    let (body_bytes, bodies) = imap_cmd(&mut r, &mut w, "e", "FETCH 1:100 (BODY.PEEK[])").await?;
    let (_, noop) = imap_cmd(&mut r, &mut w, "f", "NOOP").await?;
    println!(
        "imap {account}: SELECT {:.3} s; UID FETCH 1:* (FLAGS) {:.3} s ({:.1} MB); \
         UID SEARCH UNSEEN {:.3} s; FETCH 1:100 (BODY.PEEK[]) {:.3} s ({:.1} MB); NOOP {:.4} s",
        select.as_secs_f64(),
        flags.as_secs_f64(),
        flags_bytes as f64 / 1e6,
        search.as_secs_f64(),
        bodies.as_secs_f64(),
        body_bytes as f64 / 1e6,
        noop.as_secs_f64()
    );
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

async fn imap_login(
    addr: &str,
    account: &str,
) -> anyhow::Result<(
    tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
)> {
    use tokio::io::AsyncBufReadExt;
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (r, mut w) = s.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut greeting = String::new();
    r.read_line(&mut greeting).await?;
    imap_cmd(
        &mut r,
        &mut w,
        "l",
        &format!("LOGIN {account} bench-password"),
    )
    .await?;
    Ok((r, w))
}

/// Creates `accounts` and fills each INBOX with `messages` small
/// messages: each delivery goes to a group of accounts at once (one body,
/// many recipients), groups in parallel.
async fn idle_setup(
    uri: &str,
    auth: &CallAuth,
    accounts: &[String],
    messages: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let with_passwords: Vec<(String, String)> = accounts
        .iter()
        .map(|a| (a.clone(), "bench-password".to_string()))
        .collect();
    create_accounts(uri, auth, &with_passwords).await?;
    let channel = mail_bench::store_channel(uri)?;
    const GROUPS: usize = 4;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for g in 0..GROUPS {
        let rcpts: Vec<String> = accounts.iter().skip(g).step_by(GROUPS).cloned().collect();
        if rcpts.is_empty() {
            continue;
        }
        let mut d = mailbox_api::delivery_client(channel.clone(), auth.clone());
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..messages {
                let mut chunks = deliver_chunks(
                    format!("{run}-{g}-{i}"),
                    String::new(),
                    format!("X-Bench: {g}-{i}\r\n").into_bytes(),
                    message(1024),
                );
                if let Some(pb::deliver_chunk::Part::Header(h)) = &mut chunks[0].part {
                    h.recipients = rcpts.clone();
                }
                d.deliver(tokio_stream::iter(chunks)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "setup: {} accounts x {messages} messages in {:.0} s",
        accounts.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn imap_idle(
    addr: &str,
    store: &str,
    auth: &CallAuth,
    pid: u32,
    accounts: &[String],
    per_account: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let sessions = accounts.len() * per_account;
    let before = rss_kib(pid)?;
    let start = Instant::now();
    // Each session reports (its account, when it saw a new EXISTS).
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut writers = Vec::with_capacity(sessions);
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    let mut opened = Vec::new();
    for s in 0..sessions {
        let a = s % accounts.len();
        let (addr, account) = (addr.to_string(), accounts[a].clone());
        let permit = opening.clone().acquire_owned().await?;
        opened.push(tokio::spawn(async move {
            let (mut r, mut w) = imap_login(&addr, &account).await?;
            imap_cmd(&mut r, &mut w, "s", "SELECT INBOX").await?;
            w.write_all(b"i IDLE\r\n").await?;
            let mut l = String::new();
            r.read_line(&mut l).await?;
            anyhow::ensure!(l.starts_with('+'), "IDLE: {l}");
            drop(permit);
            anyhow::Ok((r, w))
        }));
    }
    let mut readers = Vec::with_capacity(sessions);
    for (s, t) in opened.into_iter().enumerate() {
        let (mut r, w) = t.await??;
        writers.push(w);
        let seen = seen_tx.clone();
        let a = s % accounts.len();
        readers.push(tokio::spawn(async move {
            let mut l = String::new();
            loop {
                l.clear();
                if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l.ends_with("EXISTS\r\n") && seen.send((a, Instant::now())).is_err() {
                    return;
                }
            }
        }));
    }
    let opened_in = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    let grown = after.saturating_sub(before);
    println!(
        "imap-idle: {sessions} sessions ({} accounts x {per_account}, each logged in, INBOX \
         SELECTed, IDLE) opened in {:.1} s; gateway VmRSS {:.1} MiB -> {:.1} MiB: \
         {:.1} KiB per session",
        accounts.len(),
        opened_in.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        grown as f64 / sessions as f64
    );
    // Deliveries: one message to every account at once, per round; each
    // session's delay is from its account's delivery being sent.
    let channel = mail_bench::store_channel(store)?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut delays: Vec<Duration> = Vec::new();
    for round in 0..rounds {
        let sent_at = Instant::now();
        let mut sends = Vec::new();
        for (a, account) in accounts.iter().enumerate() {
            let mut d = mailbox_api::delivery_client(channel.clone(), auth.clone());
            let chunks = deliver_chunks(
                format!("{run}-{round}-{a}"),
                account.clone(),
                Vec::new(),
                message(2048),
            );
            sends.push(tokio::spawn(async move {
                d.deliver(tokio_stream::iter(chunks)).await
            }));
        }
        for s in sends {
            s.await??;
        }
        let acked = sent_at.elapsed();
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got < sessions {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some((_, at))) => {
                    delays.push(at - sent_at);
                    got += 1;
                }
                _ => break,
            }
        }
        let mut round_delays: Vec<Duration> = delays[delays.len() - got..].to_vec();
        round_delays.sort();
        println!(
            "round {}: {} deliveries acknowledged in {:.0} ms; {got} of {sessions} sessions \
             saw EXISTS, last after {:.0} ms",
            round + 1,
            accounts.len(),
            acked.as_secs_f64() * 1e3,
            round_delays
                .last()
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        );
        anyhow::ensure!(
            got == sessions,
            "{} sessions never saw the delivery",
            sessions - got
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    delays.sort();
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "delivery to EXISTS over {rounds} rounds: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    drop(writers);
    for r in readers {
        r.abort();
    }
    Ok(())
}

async fn imap_mix(addr: &str, clients: usize, seconds: u64, account: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (addr, account) = (addr.to_string(), account.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat: HashMap<&'static str, Vec<Duration>> = HashMap::new();
            let (mut r, mut w) = imap_login(&addr, &account).await?;
            let mut n = 0u32;
            let body = message(2048);
            while Instant::now() < deadline {
                n += 1;
                let t = format!("c{c}x{n}");
                let (_, d) = imap_cmd(&mut r, &mut w, &format!("{t}a"), "SELECT INBOX").await?;
                lat.entry("SELECT").or_default().push(d);
                let seq = 1 + (n * 7919 + c as u32 * 104_729) % 500;
                let (_, d) = imap_cmd(
                    &mut r,
                    &mut w,
                    &format!("{t}b"),
                    &format!("FETCH {seq}:{} (FLAGS ENVELOPE BODY.PEEK[])", seq + 4),
                )
                .await?;
                lat.entry("FETCH").or_default().push(d);
                let (_, d) = imap_cmd(
                    &mut r,
                    &mut w,
                    &format!("{t}c"),
                    &format!("STORE {seq} +FLAGS (\\Seen)"),
                )
                .await?;
                lat.entry("STORE").or_default().push(d);
                let (_, d) = imap_cmd(
                    &mut r,
                    &mut w,
                    &format!("{t}d"),
                    "SEARCH UNSEEN SMALLER 3000",
                )
                .await?;
                lat.entry("SEARCH").or_default().push(d);
                let start = Instant::now();
                w.write_all(format!("{t}e APPEND Drafts {{{}+}}\r\n", body.len()).as_bytes())
                    .await?;
                w.write_all(&body).await?;
                w.write_all(b"\r\n").await?;
                let mut l = String::new();
                loop {
                    l.clear();
                    r.read_line(&mut l).await?;
                    if l.starts_with(&format!("{t}e ")) {
                        anyhow::ensure!(l.contains("OK"), "APPEND: {l}");
                        break;
                    }
                }
                lat.entry("APPEND").or_default().push(start.elapsed());
                let start = Instant::now();
                w.write_all(format!("{t}f IDLE\r\n").as_bytes()).await?;
                l.clear();
                r.read_line(&mut l).await?;
                w.write_all(b"DONE\r\n").await?;
                loop {
                    l.clear();
                    r.read_line(&mut l).await?;
                    if l.starts_with(&format!("{t}f ")) {
                        break;
                    }
                }
                lat.entry("IDLE").or_default().push(start.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all: HashMap<&'static str, Vec<Duration>> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await?? {
            all.entry(k).or_default().extend(v);
        }
    }
    let total: usize = all.values().map(Vec::len).sum();
    println!(
        "imap-mix: {clients} clients, {seconds} s: {total} commands, {:.0} commands/s",
        total as f64 / seconds as f64
    );
    let mut names: Vec<_> = all.keys().copied().collect();
    names.sort_unstable();
    for k in names {
        let v = all.get_mut(k).map(|v| {
            v.sort_unstable();
            v.clone()
        });
        let v = v.unwrap_or_default();
        let p = |q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "  {k:<7} n={:<6} p50 {:?} p99 {:?}",
            v.len(),
            p(0.5),
            p(0.99)
        );
    }
    Ok(())
}

/// One Deliver stream: the header, then the message in one data chunk.
fn deliver_chunks(
    delivery_id: String,
    recipient: impl Into<String>,
    trace_headers: Vec<u8>,
    body: Vec<u8>,
) -> Vec<pb::DeliverChunk> {
    vec![
        pb::DeliverChunk {
            part: Some(pb::deliver_chunk::Part::Header(pb::DeliverHeader {
                delivery_id,
                envelope_from: "load@bench.test".into(),
                recipients: vec![recipient.into()],
                received_at: 1_700_000_000,
                trace_headers,
                size_hint: body.len() as u64,
                per_recipient_replies: false,
            })),
        },
        pb::DeliverChunk {
            part: Some(pb::deliver_chunk::Part::Data(body)),
        },
    ]
}
