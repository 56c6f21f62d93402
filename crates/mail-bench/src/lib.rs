//! mail-bench as a library: the load generators that tests also run.

pub mod burst;
pub mod imap_stress;

/// The channel to the store at `uri` (one URL or a `store_url` list), with
/// client TLS when `MAIL_BENCH_STORE_TLS_CA` (and for mutual TLS
/// `MAIL_BENCH_STORE_TLS_CERT`/`_KEY`) name the files, as the services'
/// `store_tls_*` settings do: for benchmarks of a store that requires it.
pub fn store_channel(uri: &str) -> anyhow::Result<mailbox_api::StoreChannel> {
    let var = |k: &str| std::env::var(format!("MAIL_BENCH_STORE_TLS_{k}")).unwrap_or_default();
    let tls = mailbox_api::tls::StoreTls::from_config(&var("CA"), &var("CERT"), &var("KEY"))
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(mailbox_api::channel_with_tls(uri, tls.as_ref())?)
}
