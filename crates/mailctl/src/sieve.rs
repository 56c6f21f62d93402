//! `mailctl sieve`: an operator's hand on an account's Sieve scripts,
//! through the store's Sieve service with a session opened for the
//! account (Admin.OpenSession), so the store validates and limits them
//! exactly as it does for the user's ManageSieve client.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use mailbox_api::{SieveClient, pb};

use crate::admin::Target;

#[derive(Subcommand)]
pub enum SieveCmd {
    /// Store a script (replacing one of the same name) after the store has
    /// validated it; `-` or no file reads it from stdin.
    Put {
        address: String,
        name: String,
        file: Option<PathBuf>,
        /// Make it the active script too.
        #[arg(long)]
        activate: bool,
    },
    /// Print a script.
    Get { address: String, name: String },
    /// The account's scripts; the active one is marked.
    List { address: String },
    /// Make a script the one that runs at delivery.
    Activate { address: String, name: String },
    /// Leave the account with no active script.
    Deactivate { address: String },
    /// Delete a script (not the active one).
    #[command(alias = "rm")]
    Del { address: String, name: String },
}

impl SieveCmd {
    fn address(&self) -> &str {
        match self {
            SieveCmd::Put { address, .. }
            | SieveCmd::Get { address, .. }
            | SieveCmd::List { address }
            | SieveCmd::Activate { address, .. }
            | SieveCmd::Deactivate { address }
            | SieveCmd::Del { address, .. } => address,
        }
    }
}

/// A Sieve client acting for `address`.
async fn client_for(target: &Target, address: &str) -> anyhow::Result<SieveClient> {
    let token = target
        .admin()?
        .open_session(pb::OpenSessionRequest {
            address: address.to_string(),
            purpose: "sieve".into(),
        })
        .await
        .map_err(|e| explain(e, address))?
        .into_inner()
        .session_token;
    target.sieve(&token)
}

fn explain(e: tonic::Status, what: &str) -> anyhow::Error {
    match e.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "the store is not reachable ({}); is `mailctl up` or mailbox-store running?",
            e.message()
        ),
        tonic::Code::NotFound => anyhow::anyhow!("{what}: not found"),
        tonic::Code::FailedPrecondition => {
            anyhow::anyhow!("{what} is the active script; deactivate it first")
        }
        _ => anyhow::anyhow!("{}", e.message()),
    }
}

pub async fn run(target: Target, cmd: SieveCmd) -> anyhow::Result<()> {
    let mut c = client_for(&target, cmd.address()).await?;
    match cmd {
        SieveCmd::Put {
            name,
            file,
            activate,
            ..
        } => {
            let content = match file {
                Some(p) if p.as_os_str() != "-" => {
                    std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?
                }
                _ => {
                    let mut v = Vec::new();
                    std::io::stdin().read_to_end(&mut v)?;
                    v
                }
            };
            let r = c
                .put_script(pb::PutScriptRequest {
                    name: name.clone(),
                    content,
                })
                .await
                .map_err(|e| explain(e, &name))?
                .into_inner();
            if let Some(e) = r.error {
                bail!(
                    "{name}: line {}, column {}: {}",
                    e.line,
                    e.column,
                    e.message
                );
            }
            match pb::SieveQuota::try_from(r.quota) {
                Ok(pb::SieveQuota::MaxScripts) => {
                    bail!("the account has its {} scripts already", r.max_scripts)
                }
                Ok(pb::SieveQuota::MaxSize) => {
                    bail!("scripts are at most {} bytes", r.max_size)
                }
                _ => {}
            }
            if activate {
                c.set_active(pb::SetActiveRequest { name: name.clone() })
                    .await
                    .map_err(|e| explain(e, &name))?;
            }
            println!("stored {name}{}", if activate { " (active)" } else { "" });
        }
        SieveCmd::Get { name, .. } => {
            let r = c
                .get_script(pb::GetScriptRequest { name: name.clone() })
                .await
                .map_err(|e| explain(e, &name))?
                .into_inner();
            std::io::stdout().write_all(&r.content)?;
        }
        SieveCmd::List { .. } => {
            let r = c
                .list_scripts(pb::ListScriptsRequest {})
                .await
                .map_err(|e| explain(e, "scripts"))?
                .into_inner();
            for s in r.scripts {
                let active = if s.active { "  (active)" } else { "" };
                println!("{}  {} bytes{active}", s.name, s.size);
            }
        }
        SieveCmd::Activate { name, .. } => {
            c.set_active(pb::SetActiveRequest { name: name.clone() })
                .await
                .map_err(|e| explain(e, &name))?;
            println!("{name} is active");
        }
        SieveCmd::Deactivate { .. } => {
            c.set_active(pb::SetActiveRequest {
                name: String::new(),
            })
            .await
            .map_err(|e| explain(e, "scripts"))?;
            println!("no script is active");
        }
        SieveCmd::Del { name, .. } => {
            c.delete_script(pb::DeleteScriptRequest { name: name.clone() })
                .await
                .map_err(|e| explain(e, &name))?;
            println!("deleted {name}");
        }
    }
    Ok(())
}
