//! `mailctl init`: the one-shot preparation a container deployment needs
//! before the services start (the `init` service of docker-compose.yml).
//!
//! It makes sure a TLS certificate and key, and the store's service secret,
//! exist; whatever is already there is kept as it is, so the command can
//! run before every start and never replaces a certificate the operator put
//! in place:
//!
//! - `<tls-dir>/tls.crt` and `<tls-dir>/tls.key`: both present, they are
//!   kept (not even read); both absent, a self-signed pair is generated for
//!   `--hostname` and the local names; only one present is an error, since
//!   writing the other would make a pair that does not match.
//! - the global `--secret-file` (default `<data-dir>/store.secret`): kept
//!   when present, else a fresh random secret.
//! - with `--grpc-tls-dir`, the services' gRPC mutual TLS: a private CA
//!   (`ca.crt`), the store's server certificate (`store.crt`/`store.key`,
//!   for `--store-hostname` and the local names) and one client certificate
//!   the callers share (`client.crt`/`client.key`). All five present, they
//!   are kept; none, a new set is made (the CA's key is not kept: delete
//!   the five files to get a new set); some, an error.
//!
//! New files are created exclusively (never over an existing file). The key
//! and the secret are owner-only (0600), the certificate 0644: in the
//! container the owner is the services' own uid (10001), so they can read
//! them while nobody else can read the secrets.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use rand::RngCore;

/// File names in the TLS directory, as Kubernetes' `kubernetes.io/tls`
/// Secrets and the services' compose configuration use them.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

#[derive(Args)]
pub struct InitArgs {
    /// Directory for `tls.crt` and `tls.key` (created if missing).
    #[arg(long, env = "MAILCTL_INIT_TLS_DIR")]
    tls_dir: PathBuf,
    /// Host name the self-signed certificate is issued for, in addition to
    /// localhost, 127.0.0.1 and ::1.
    #[arg(long, default_value = "mail.example.test")]
    hostname: String,
    /// Directory for the gRPC mutual-TLS files (`ca.crt`, `store.crt`,
    /// `store.key`, `client.crt`, `client.key`; created if missing). Not
    /// given: none are made.
    #[arg(long, env = "MAILCTL_INIT_GRPC_TLS_DIR")]
    grpc_tls_dir: Option<PathBuf>,
    /// Host name the store's gRPC certificate is issued for (the host of
    /// the callers' `store_url`), in addition to localhost, 127.0.0.1 and ::1.
    #[arg(long, default_value = "mailbox-store")]
    store_hostname: String,
}

/// The gRPC mutual-TLS files in `--grpc-tls-dir`, in the order they are
/// written (keys before their certificates, the CA last).
pub const GRPC_TLS_FILES: [&str; 5] = [
    "store.key",
    "store.crt",
    "client.key",
    "client.crt",
    "ca.crt",
];

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Kept => "kept (already there)",
        })
    }
}

/// Runs `mailctl init`: prints one line per file saying whether it was
/// created or kept. The secret goes to the global `--secret-file` (whose
/// directory is created if missing), by default `<data-dir>/store.secret`.
pub fn run(args: InitArgs, data_dir: &Path, secret_file: Option<&Path>) -> anyhow::Result<()> {
    let secret_file = secret_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(crate::up::SECRET_FILE));
    let tls = ensure_tls_pair(&args.tls_dir, &args.hostname)?;
    println!(
        "TLS certificate: {} and {}: {tls}",
        args.tls_dir.join(CERT_FILE).display(),
        args.tls_dir.join(KEY_FILE).display()
    );
    let (_, secret) = ensure_secret_file(&secret_file)?;
    println!("store secret:    {}: {secret}", secret_file.display());
    if let Some(dir) = &args.grpc_tls_dir {
        let grpc = ensure_grpc_tls(dir, &args.store_hostname)?;
        println!(
            "gRPC mutual TLS: {} (ca.crt, store.crt/key, client.crt/key): {grpc}",
            dir.display()
        );
    }
    Ok(())
}

/// Makes sure the five gRPC mutual-TLS files exist in `dir`: a CA, the
/// store's certificate for `store_hostname` and the local names, and a
/// client certificate; all made together or none.
fn ensure_grpc_tls(dir: &Path, store_hostname: &str) -> anyhow::Result<Outcome> {
    let paths = GRPC_TLS_FILES.map(|f| dir.join(f));
    let mut present = Vec::new();
    for p in &paths {
        if exists(p)? {
            present.push(p.display().to_string());
        }
    }
    if present.len() == paths.len() {
        return Ok(Outcome::Kept);
    }
    if !present.is_empty() {
        anyhow::bail!(
            "{} exist(s) but not all of {}: remove them to have a new set generated, \
             or put the missing files in place",
            present.join(", "),
            GRPC_TLS_FILES.join(", ")
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    use service_kit::tls::{CertUsage, InternalCa};
    let ca = InternalCa::generate("mail internal gRPC CA").context("generating the gRPC CA")?;
    let mut names = vec![store_hostname.to_string()];
    names.extend(
        service_kit::tls::LOCAL_NAMES
            .iter()
            .filter(|n| **n != store_hostname)
            .map(|n| n.to_string()),
    );
    let (store_cert, store_key) = ca
        .issue(&names, CertUsage::Server)
        .context("issuing the store's gRPC certificate")?;
    let (client_cert, client_key) = ca
        .issue(&["mail-services".to_string()], CertUsage::Client)
        .context("issuing the gRPC client certificate")?;
    let contents = [
        (store_key, 0o600),
        (store_cert, 0o644),
        (client_key, 0o600),
        (client_cert, 0o644),
        (ca.cert_pem().to_string(), 0o644),
    ];
    for (path, (pem, mode)) in paths.iter().zip(contents) {
        write_new(path, pem.as_bytes(), mode)?;
    }
    Ok(Outcome::Created)
}

/// Makes sure `dir/tls.crt` and `dir/tls.key` exist, generating a
/// self-signed pair for `hostname` and the local names when neither does.
fn ensure_tls_pair(dir: &Path, hostname: &str) -> anyhow::Result<Outcome> {
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    match (exists(&cert)?, exists(&key)?) {
        (true, true) => return Ok(Outcome::Kept),
        (false, false) => {}
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            anyhow::bail!(
                "{} exists but {} does not: put the matching file in place, or remove {} \
                 to have a new self-signed pair generated",
                present.display(),
                missing.display(),
                present.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = vec![hostname.to_string()];
    names.extend(
        service_kit::tls::LOCAL_NAMES
            .iter()
            .filter(|n| **n != hostname)
            .map(|n| n.to_string()),
    );
    let (cert_pem, key_pem) = service_kit::tls::self_signed_pem(&names)
        .context("generating a self-signed certificate")?;
    // The key first: a certificate without its key would be the worse
    // leftover of an interrupted run.
    write_new(&key, key_pem.as_bytes(), 0o600)?;
    write_new(&cert, cert_pem.as_bytes(), 0o644)?;
    Ok(Outcome::Created)
}

/// Reads the service secret at `path`, creating a random one (48 hex
/// characters, owner-only) when the file does not exist. Also used by
/// `mailctl up` for its data directory.
pub fn ensure_secret_file(path: &Path) -> anyhow::Result<(String, Outcome)> {
    if exists(path)? {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok((s.trim().to_string(), Outcome::Kept));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    let secret = hex::encode(b);
    write_new(path, format!("{secret}\n").as_bytes(), 0o600)?;
    Ok((secret, Outcome::Created))
}

/// Whether `path` exists (a dangling symlink counts: it is not ours to
/// replace); errors other than "not found" are reported, not guessed at.
fn exists(path: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("checking {}", path.display())),
    }
}

/// Creates `path` with `data`, failing if it already exists. On Unix the
/// file has `mode` from the moment it exists (no window in which a secret
/// is readable by others), whatever the umask.
fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        // The umask may have taken bits away (e.g. 0644 -> 0640); set them.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
