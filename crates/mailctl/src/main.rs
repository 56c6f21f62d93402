//! mailctl: the operator's CLI over the store's Admin API, and `mailctl up`,
//! which runs every service in one process on an embedded SQLite store.

mod admin;
mod init;
mod migrate;
mod sieve;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Operate the mail system: domains, accounts, quotas, and `up`"
)]
struct Cli {
    /// Data directory of `mailctl up`: its SQLite file, TLS certificate, and
    /// the store address and secret other commands use.
    #[arg(long, global = true, env = "MAILCTL_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Store gRPC address (default: the one `mailctl up` recorded in the data
    /// directory, else http://127.0.0.1:50051).
    #[arg(long, global = true, env = "MAILCTL_STORE")]
    store: Option<String>,
    /// File holding the store's service secret (default: `<data-dir>/store.secret`
    /// when it exists). The secret itself is never taken from the command line.
    #[arg(long, global = true, env = "MAILCTL_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// CA file of the store's gRPC certificate, when the store serves gRPC
    /// over TLS (`grpc_tls_*` in its settings).
    #[arg(long, global = true, env = "MAILCTL_STORE_TLS_CA", default_value = "")]
    store_tls_ca: String,
    /// Client certificate for the store's mutual TLS (with --store-tls-key).
    #[arg(
        long,
        global = true,
        env = "MAILCTL_STORE_TLS_CERT",
        default_value = ""
    )]
    store_tls_cert: String,
    /// Key of the client certificate.
    #[arg(long, global = true, env = "MAILCTL_STORE_TLS_KEY", default_value = "")]
    store_tls_key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process on an embedded SQLite store.
    Up(Box<up::UpArgs>),
    /// Create the TLS certificate and store secret a deployment needs, keeping any already there.
    Init(init::InitArgs),
    /// Copy accounts in from an IMAP server, a Maildir or mbox files;
    /// resumable, with a count check per folder.
    #[command(subcommand)]
    Import(migrate::ImportCmd),
    /// Write an account out as a Maildir or a directory of mbox files.
    Export(migrate::ExportArgs),
    /// An account's Sieve scripts (the filters run at delivery).
    #[command(subcommand)]
    Sieve(sieve::SieveCmd),
    #[command(flatten)]
    Admin(admin::AdminCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with causes), never a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tls = mailbox_api::tls::StoreTls::from_config(
        &cli.store_tls_ca,
        &cli.store_tls_cert,
        &cli.store_tls_key,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    rt.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(&cli.data_dir, *args).await,
            Command::Init(args) => init::run(args, &cli.data_dir, cli.secret_file.as_deref()),
            Command::Import(cmd) => {
                let target = admin::Target::resolve(
                    &cli.data_dir,
                    cli.store.as_deref(),
                    cli.secret_file.as_deref(),
                    tls,
                )?;
                migrate::import(target, cmd).await
            }
            Command::Export(args) => {
                let target = admin::Target::resolve(
                    &cli.data_dir,
                    cli.store.as_deref(),
                    cli.secret_file.as_deref(),
                    tls,
                )?;
                migrate::export(target, args).await
            }
            Command::Sieve(cmd) => {
                let target = admin::Target::resolve(
                    &cli.data_dir,
                    cli.store.as_deref(),
                    cli.secret_file.as_deref(),
                    tls,
                )?;
                sieve::run(target, cmd).await
            }
            Command::Admin(cmd) => {
                let target = admin::Target::resolve(
                    &cli.data_dir,
                    cli.store.as_deref(),
                    cli.secret_file.as_deref(),
                    tls,
                )?;
                admin::run(target, cmd).await
            }
        }
    })
}
