//! The Admin commands: each is one call to the store's Admin service.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use mailbox_api::{AdminClient, CallAuth, pb};

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Manage the domains mail is accepted for.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Manage aliases (extra addresses delivering to an account).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Set storage quotas.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// App passwords: one per client that only speaks PLAIN, each
    /// revocable on its own (its sessions end with it).
    #[command(subcommand)]
    AppPassword(AppPasswordCmd),
    /// Show store statistics (with live and reclaimable body bytes, and
    /// the full-text index's size per GiB of mail).
    Stats,
    /// The full-text index of SEARCH BODY/TEXT/HEADER.
    #[command(subcommand)]
    Fts(FtsCmd),
    /// Delete now the message bodies no message references any more (the
    /// store also does it on its own, every blob_gc_interval_secs).
    Gc {
        /// Keep bodies stored less than this many seconds ago (default: the
        /// store's blob_gc_grace_secs).
        #[arg(long)]
        grace_secs: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum FtsCmd {
    /// How many bodies are indexed, and the index's size.
    Status {
        /// Follow the background indexing with a progress bar until every
        /// body is indexed.
        #[arg(long)]
        wait: bool,
    },
    /// Index every body again (the store replicas do it in the
    /// background; searches stay complete meanwhile), following the
    /// progress with a progress bar.
    Rebuild {
        /// Return once the bodies are marked, without following.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
pub enum DomainCmd {
    /// Accept mail for a domain.
    Add {
        name: String,
    },
    List,
    /// Stop accepting mail for a domain (it must have no accounts).
    #[command(alias = "rm")]
    Del {
        name: String,
    },
    /// The OpenID Connect issuer whose JWTs log in the domain's mailboxes
    /// over IMAP and POP3 (SASL OAUTHBEARER / XOAUTH2).
    #[command(subcommand)]
    Oidc(OidcCmd),
}

#[derive(Subcommand)]
pub enum OidcCmd {
    /// Set (or replace) the domain's issuer.
    Set {
        domain: String,
        /// The `iss` tokens must carry.
        #[arg(long)]
        issuer: String,
        /// The `aud` tokens must carry (the client id the identity
        /// provider gives the mail service).
        #[arg(long)]
        audience: String,
        /// The issuer's key set (https://, or http:// to a loopback host).
        #[arg(long)]
        jwks_url: String,
        /// The claim naming the mailbox.
        #[arg(long, default_value = "email")]
        claim: String,
    },
    /// Show the domain's issuer.
    Show { domain: String },
    /// Remove the domain's issuer (token logins stop).
    #[command(alias = "rm")]
    Del { domain: String },
}

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Create an account; the password is read from stdin (or prompted for).
    Add {
        address: String,
        /// Quota in bytes (0: unlimited).
        #[arg(long, default_value_t = 0)]
        quota: u64,
    },
    /// Set a new password, read from stdin (or prompted for).
    Passwd { address: String },
    /// Delete an account and all its mail.
    #[command(alias = "rm")]
    Del { address: String },
    List {
        /// Only this domain.
        #[arg(long, default_value = "")]
        domain: String,
    },
    /// Disable (or with --enable, re-enable) logins and delivery.
    Disable {
        address: String,
        #[arg(long)]
        enable: bool,
    },
}

#[derive(Subcommand)]
pub enum AliasCmd {
    Add {
        alias: String,
        target: String,
    },
    List,
    #[command(alias = "rm")]
    Del {
        alias: String,
    },
}

#[derive(Subcommand)]
pub enum AppPasswordCmd {
    /// Make an app password for an account; it is printed once.
    Add {
        address: String,
        name: String,
    },
    List {
        address: String,
    },
    /// Revoke one (the sessions opened with it end too).
    #[command(alias = "rm")]
    Revoke {
        address: String,
        name: String,
    },
}

#[derive(Subcommand)]
pub enum QuotaCmd {
    /// Set an account's quota in bytes (0: unlimited) and, with
    /// --messages, the most messages it may hold (0: unlimited).
    Set {
        address: String,
        bytes: u64,
        #[arg(long)]
        messages: Option<u64>,
    },
}

/// Where the store is and how to authenticate to it.
pub struct Target {
    uri: String,
    secret: Option<String>,
    tls: Option<mailbox_api::tls::StoreTls>,
}

impl Target {
    pub fn resolve(
        data_dir: &Path,
        store: Option<&str>,
        secret_file: Option<&Path>,
        tls: Option<mailbox_api::tls::StoreTls>,
    ) -> anyhow::Result<Self> {
        let recorded = std::fs::read_to_string(data_dir.join(crate::up::STORE_URL_FILE))
            .ok()
            .map(|s| s.trim().to_string());
        let uri = store
            .map(str::to_string)
            .or(recorded)
            .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
        let default_secret = data_dir.join(crate::up::SECRET_FILE);
        let secret_path = secret_file
            .map(Path::to_path_buf)
            .or_else(|| default_secret.exists().then_some(default_secret));
        let secret = match secret_path {
            Some(p) => Some(
                std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Self { uri, secret, tls })
    }

    fn client(&self) -> anyhow::Result<AdminClient> {
        let channel = mailbox_api::channel_with_tls(&self.uri, self.tls.as_ref())
            .with_context(|| format!("store address {:?}", self.uri))?;
        Ok(mailbox_api::admin_client(
            channel,
            CallAuth::new(self.secret.as_deref())?,
        ))
    }

    /// The Admin API client.
    pub fn admin(&self) -> anyhow::Result<AdminClient> {
        self.client()
    }

    /// A Sieve API client acting with an account's session token.
    pub fn sieve(&self, session_token: &str) -> anyhow::Result<mailbox_api::SieveClient> {
        let channel = mailbox_api::channel_with_tls(&self.uri, self.tls.as_ref())
            .with_context(|| format!("store address {:?}", self.uri))?;
        Ok(mailbox_api::sieve_client(
            channel,
            CallAuth::new(self.secret.as_deref())?.with_session(session_token)?,
        ))
    }

    /// A Mailbox API client acting with an account's session token.
    pub fn mailbox(&self, session_token: &str) -> anyhow::Result<mailbox_api::MailboxClient> {
        let channel = mailbox_api::channel_with_tls(&self.uri, self.tls.as_ref())
            .with_context(|| format!("store address {:?}", self.uri))?;
        Ok(mailbox_api::mailbox_client(
            channel,
            CallAuth::new(self.secret.as_deref())?.with_session(session_token)?,
        ))
    }
}

/// Reads a password: one line from stdin when it is not a terminal, else a
/// hidden prompt (twice). Never from argv.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        bail!("empty password");
    }
    Ok(pw)
}

/// Reads an existing secret (no confirmation): one line from stdin when it
/// is not a terminal, else a hidden prompt.
pub fn read_secret(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        rpassword::prompt_password(prompt)?
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        bail!("empty password");
    }
    Ok(pw)
}

fn explain(e: tonic::Status, uri: &str) -> anyhow::Error {
    match e.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "the store at {uri} is not reachable ({}); is `mailctl up` or mailbox-store running?",
            e.message()
        ),
        tonic::Code::Unauthenticated => anyhow::anyhow!(
            "the store refused our service secret; pass --secret-file or --data-dir"
        ),
        _ => anyhow::anyhow!("{}", e.message()),
    }
}

/// `bytes` per GiB of `of`, in MiB.
fn per_gib(bytes: u64, of: u64) -> String {
    if of == 0 {
        return "-".into();
    }
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let gib = of as f64 / (1u64 << 30) as f64;
    format!("{:.1} MiB", mib / gib)
}

async fn fts_status(c: &mut AdminClient, uri: &str) -> anyhow::Result<pb::FtsStatusResponse> {
    Ok(c.fts_status(pb::FtsStatusRequest {})
        .await
        .map_err(|e| explain(e, uri))?
        .into_inner())
}

fn print_fts(s: &pb::FtsStatusResponse) {
    println!(
        "indexed    {} of {} bodies ({} waiting)",
        s.blobs.saturating_sub(s.pending),
        s.blobs,
        s.pending
    );
    if s.pending_trigram > 0 {
        println!(
            "trigram    {} texts written, not yet in the trigram index (searches read them)",
            s.pending_trigram
        );
    }
    if s.pending_words > 0 {
        println!(
            "words      {} texts without their words in the word index (from an older \
             version; the indexer redoes them, searches read them)",
            s.pending_words
        );
    }
    println!("index      {} bytes", s.index_bytes);
}

/// Whether no body waits: every body has its text, and every text is in
/// the trigram and word indexes (PostgreSQL fills them in the background).
fn indexing_done(s: &pb::FtsStatusResponse) -> bool {
    s.pending == 0 && s.pending_trigram == 0 && s.pending_words == 0
}

/// Polls the index's state with a progress bar (on a terminal) until no
/// body waits: neither for its text nor for the trigram index.
async fn follow_fts(c: &mut AdminClient, uri: &str) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    let first = fts_status(c, uri).await?;
    let bar = ProgressBar::new(first.blobs);
    bar.set_style(
        ProgressStyle::with_template(
            "indexing [{bar:30}] {pos}/{len} bodies ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let s = fts_status(c, uri).await?;
        bar.set_length(s.blobs);
        bar.set_position(s.blobs.saturating_sub(s.pending));
        if indexing_done(&s) {
            bar.finish_and_clear();
            print_fts(&s);
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

pub async fn run(target: Target, cmd: AdminCmd) -> anyhow::Result<()> {
    let mut c = target.client()?;
    let uri = target.uri.clone();
    let err = |e| explain(e, &uri);
    match cmd {
        AdminCmd::Domain(DomainCmd::Add { name }) => {
            c.add_domain(pb::AddDomainRequest { name: name.clone() })
                .await
                .map_err(err)?;
            println!("domain {name} added");
        }
        AdminCmd::Domain(DomainCmd::List) => {
            for d in c
                .list_domains(pb::ListDomainsRequest {})
                .await
                .map_err(err)?
                .into_inner()
                .domains
            {
                println!("{d}");
            }
        }
        AdminCmd::Domain(DomainCmd::Del { name }) => {
            c.delete_domain(pb::DeleteDomainRequest { name: name.clone() })
                .await
                .map_err(err)?;
            println!("domain {name} deleted");
        }
        AdminCmd::Domain(DomainCmd::Oidc(OidcCmd::Set {
            domain,
            issuer,
            audience,
            jwks_url,
            claim,
        })) => {
            c.set_domain_oidc(pb::SetDomainOidcRequest {
                oidc: Some(pb::DomainOidc {
                    domain: domain.clone(),
                    issuer,
                    audience,
                    jwks_url,
                    mailbox_claim: claim,
                }),
            })
            .await
            .map_err(err)?;
            println!("domain {domain}: OpenID Connect issuer set");
        }
        AdminCmd::Domain(DomainCmd::Oidc(OidcCmd::Show { domain })) => {
            match c
                .get_domain_oidc(pb::GetDomainOidcRequest {
                    domain: domain.clone(),
                })
                .await
                .map_err(err)?
                .into_inner()
                .oidc
            {
                Some(o) => {
                    println!("issuer    {}", o.issuer);
                    println!("audience  {}", o.audience);
                    println!("jwks-url  {}", o.jwks_url);
                    println!("claim     {}", o.mailbox_claim);
                }
                None => println!("domain {domain} has no OpenID Connect issuer"),
            }
        }
        AdminCmd::Domain(DomainCmd::Oidc(OidcCmd::Del { domain })) => {
            c.set_domain_oidc(pb::SetDomainOidcRequest {
                oidc: Some(pb::DomainOidc {
                    domain: domain.clone(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(err)?;
            println!("domain {domain}: OpenID Connect issuer removed");
        }
        AdminCmd::Account(AccountCmd::Add { address, quota }) => {
            let password = read_password()?;
            c.add_account(pb::AddAccountRequest {
                address: address.clone(),
                password,
                quota_bytes: quota,
            })
            .await
            .map_err(err)?;
            println!("account {address} added");
        }
        AdminCmd::Account(AccountCmd::Passwd { address }) => {
            let password = read_password()?;
            c.set_password(pb::SetPasswordRequest {
                address: address.clone(),
                password,
            })
            .await
            .map_err(err)?;
            println!("password of {address} changed");
        }
        AdminCmd::Account(AccountCmd::Del { address }) => {
            c.delete_account(pb::DeleteAccountRequest {
                address: address.clone(),
            })
            .await
            .map_err(err)?;
            println!("account {address} deleted");
        }
        AdminCmd::Account(AccountCmd::List { domain }) => {
            let accounts = c
                .list_accounts(pb::ListAccountsRequest { domain })
                .await
                .map_err(err)?
                .into_inner()
                .accounts;
            println!(
                "{:<40} {:>12} {:>12} {:>8}  state",
                "address", "used", "quota", "msgs"
            );
            for a in accounts {
                let limit = |l: u64| {
                    if l == 0 {
                        "unlimited".to_string()
                    } else {
                        l.to_string()
                    }
                };
                let msgs = if a.quota_messages == 0 {
                    a.messages.to_string()
                } else {
                    format!("{}/{}", a.messages, a.quota_messages)
                };
                println!(
                    "{:<40} {:>12} {:>12} {:>8}  {}",
                    a.address,
                    a.used_bytes,
                    limit(a.quota_bytes),
                    msgs,
                    if a.disabled { "disabled" } else { "active" }
                );
            }
        }
        AdminCmd::Account(AccountCmd::Disable { address, enable }) => {
            c.set_account_disabled(pb::SetAccountDisabledRequest {
                address: address.clone(),
                disabled: !enable,
            })
            .await
            .map_err(err)?;
            println!(
                "account {address} {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        AdminCmd::Alias(AliasCmd::Add { alias, target }) => {
            c.add_alias(pb::AddAliasRequest {
                alias: alias.clone(),
                target: target.clone(),
            })
            .await
            .map_err(err)?;
            println!("alias {alias} -> {target} added");
        }
        AdminCmd::Alias(AliasCmd::List) => {
            for a in c
                .list_aliases(pb::ListAliasesRequest {})
                .await
                .map_err(err)?
                .into_inner()
                .aliases
            {
                println!("{} -> {}", a.alias, a.target);
            }
        }
        AdminCmd::Alias(AliasCmd::Del { alias }) => {
            c.delete_alias(pb::DeleteAliasRequest {
                alias: alias.clone(),
            })
            .await
            .map_err(err)?;
            println!("alias {alias} deleted");
        }
        AdminCmd::AppPassword(AppPasswordCmd::Add { address, name }) => {
            let r = c
                .add_app_password(pb::AddAppPasswordRequest {
                    address: address.clone(),
                    name: name.clone(),
                })
                .await
                .map_err(err)?
                .into_inner();
            // The password alone on stdout (for scripts); the rest on stderr.
            eprintln!("app password {name:?} for {address} (shown once):");
            println!("{}", r.password);
        }
        AdminCmd::AppPassword(AppPasswordCmd::List { address }) => {
            let r = c
                .list_app_passwords(pb::ListAppPasswordsRequest {
                    address: address.clone(),
                })
                .await
                .map_err(err)?
                .into_inner();
            for p in r.passwords {
                let when = chrono::DateTime::from_timestamp(p.created_at, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default();
                println!("{}\tcreated {when}", p.name);
            }
        }
        AdminCmd::AppPassword(AppPasswordCmd::Revoke { address, name }) => {
            c.revoke_app_password(pb::RevokeAppPasswordRequest {
                address: address.clone(),
                name: name.clone(),
            })
            .await
            .map_err(err)?;
            println!("app password {name:?} of {address} revoked");
        }
        AdminCmd::Quota(QuotaCmd::Set {
            address,
            bytes,
            messages,
        }) => {
            c.set_quota(pb::SetQuotaRequest {
                address: address.clone(),
                quota_bytes: bytes,
                quota_messages: messages,
            })
            .await
            .map_err(err)?;
            match messages {
                Some(m) => println!("quota of {address} set to {bytes} bytes, {m} messages"),
                None => println!("quota of {address} set to {bytes} bytes"),
            }
        }
        AdminCmd::Stats => {
            let s = c
                .stats(pb::StatsRequest {})
                .await
                .map_err(err)?
                .into_inner();
            println!("backend    {}", s.backend);
            println!("domains    {}", s.domains);
            println!("accounts   {}", s.accounts);
            println!("mailboxes  {}", s.mailboxes);
            println!("messages   {}", s.messages);
            println!(
                "blobs      {} ({} bytes as received, {} as kept after compression)",
                s.blobs, s.blob_bytes, s.stored_bytes
            );
            println!(
                "live       {} bytes (bodies some message references)",
                s.live_bytes
            );
            println!(
                "reclaimable {} bytes in {} bodies (collected after the grace period; `mailctl gc`)",
                s.reclaimable_bytes, s.reclaimable_blobs
            );
            println!(
                "fts index  {} bytes ({} per GiB of mail)",
                s.index_bytes,
                per_gib(s.index_bytes, s.blob_bytes)
            );
        }
        AdminCmd::Fts(FtsCmd::Status { wait }) => {
            let s = fts_status(&mut c, &uri).await?;
            print_fts(&s);
            if wait && !indexing_done(&s) {
                follow_fts(&mut c, &uri).await?;
            }
        }
        AdminCmd::Fts(FtsCmd::Rebuild { no_wait }) => {
            let r = c
                .fts_rebuild(pb::FtsRebuildRequest {})
                .await
                .map_err(err)?
                .into_inner();
            println!("{} bodies marked for indexing", r.marked);
            if !no_wait {
                follow_fts(&mut c, &uri).await?;
            }
        }
        AdminCmd::Gc { grace_secs } => {
            let r = c
                .collect_garbage(pb::CollectGarbageRequest { grace_secs })
                .await
                .map_err(err)?
                .into_inner();
            println!("collected {} bodies, {} bytes", r.blobs, r.bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fts status --wait` and `fts rebuild` follow the indexing until the
    /// trigram index's backlog is gone too, not only the texts: benches
    /// that waited on the texts alone timed the next run beside the
    /// background indexer's catch-up.
    #[test]
    fn waits_for_texts_and_the_trigram_backlog() {
        let s = |pending, pending_trigram, pending_words| pb::FtsStatusResponse {
            blobs: 10,
            pending,
            index_bytes: 1,
            pending_trigram,
            pending_words,
        };
        assert!(indexing_done(&s(0, 0, 0)));
        assert!(!indexing_done(&s(3, 0, 0)));
        assert!(!indexing_done(&s(0, 3000, 0)));
        assert!(!indexing_done(&s(0, 0, 20)));
    }
}
