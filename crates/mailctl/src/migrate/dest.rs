//! The account being imported into (or exported from): the store's Mailbox
//! API with a session the Admin API opened for it.

use std::collections::HashMap;

use anyhow::{Context, bail};
use mailbox_api::{MailboxClient, pb};
use tokio_stream::StreamExt;
use tonic::Code;

use super::{Folder, Key, normalise_message_id};
use crate::admin::Target;

pub struct Dest {
    client: MailboxClient,
}

/// What a target folder holds, as a multiset of identities.
#[derive(Default, Debug)]
pub struct Index {
    counts: HashMap<Key, usize>,
}

impl Index {
    fn add(&mut self, key: Key) {
        *self.counts.entry(key).or_default() += 1;
    }

    /// Takes one message with this identity out of the index; false when
    /// there is none left.
    pub fn take(&mut self, key: &Key) -> bool {
        match self.counts.get_mut(key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

impl Dest {
    pub async fn open(target: &Target, account: &str, purpose: &str) -> anyhow::Result<Self> {
        let token = target
            .admin()?
            .open_session(pb::OpenSessionRequest {
                address: account.to_string(),
                purpose: purpose.to_string(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("opening a session for {account}: {}", s.message()))?
            .into_inner()
            .session_token;
        Ok(Self {
            client: target.mailbox(&token)?,
        })
    }

    /// Ends the session (it would otherwise stay valid until it expires).
    pub async fn close(&mut self) {
        let _ = self.client.logout(pb::LogoutRequest {}).await;
    }

    /// Every folder of the account, parents before children.
    pub async fn folders(&mut self) -> anyhow::Result<Vec<Folder>> {
        let mut all: Vec<Folder> = self
            .client
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await?
            .into_inner()
            .mailboxes
            .into_iter()
            .map(|m| Folder {
                special_use: m.special_use(),
                selectable: m.uid_validity != 0,
                subscribed: m.subscribed,
                name: m.name,
            })
            .collect();
        all.sort_by(|a, b| super::folder_order(&a.name, &b.name));
        Ok(all)
    }

    /// Creates the folder when missing (with its special use; without it
    /// when another folder has that use already) and sets its
    /// subscription as the source has it.
    pub async fn ensure_folder(&mut self, f: &Folder) -> anyhow::Result<()> {
        if f.selectable && f.name != "INBOX" {
            let r = self
                .client
                .create_mailbox(pb::CreateMailboxRequest {
                    name: f.name.clone(),
                    special_use: f.special_use as i32,
                })
                .await;
            match r {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => {}
                Err(s) if f.special_use != pb::SpecialUse::None => {
                    eprintln!(
                        "{}: created without its special use ({})",
                        f.name,
                        s.message()
                    );
                    match self
                        .client
                        .create_mailbox(pb::CreateMailboxRequest {
                            name: f.name.clone(),
                            special_use: 0,
                        })
                        .await
                    {
                        Ok(_) => {}
                        Err(s) if s.code() == Code::AlreadyExists => {}
                        Err(s) => bail!("creating {}: {}", f.name, s.message()),
                    }
                }
                Err(s) => bail!("creating {}: {}", f.name, s.message()),
            }
        }
        if f.subscribed {
            self.client
                .set_subscribed(pb::SetSubscribedRequest {
                    name: f.name.clone(),
                    subscribed: true,
                })
                .await
                .with_context(|| format!("subscribing {}", f.name))?;
        }
        Ok(())
    }

    /// Metadata (with summaries when asked) of every message in a folder,
    /// by UID.
    pub async fn messages(
        &mut self,
        folder: &str,
        with_summary: bool,
    ) -> anyhow::Result<Vec<pb::MessageMeta>> {
        let mut stream = self
            .client
            .fetch(pb::FetchRequest {
                mailbox: folder.to_string(),
                uids: Some(pb::UidSet {
                    ranges: vec![pb::UidRange {
                        first: 1,
                        last: u32::MAX,
                    }],
                }),
                with_summary,
                changed_since: 0,
                with_data: false,
            })
            .await
            .with_context(|| format!("listing {folder}"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            out.extend(batch?.messages);
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// The identities of what a folder holds (both kinds for each message).
    pub async fn index(&mut self, folder: &str) -> anyhow::Result<Index> {
        let mut index = Index::default();
        for m in self.messages(folder, true).await? {
            let id = m
                .summary
                .as_ref()
                .and_then(|s| s.envelope.as_ref())
                .and_then(|e| e.message_id.as_deref())
                .map(normalise_message_id)
                .unwrap_or_default();
            index.add(Key::Meta(id, m.internal_date, m.size));
            index.add(Key::Content(m.blob_id));
        }
        Ok(index)
    }

    /// The bytes of one message.
    pub async fn body(&mut self, folder: &str, m: &pb::MessageMeta) -> anyhow::Result<Vec<u8>> {
        let mut stream = self
            .client
            .fetch_body(pb::FetchBodyRequest {
                mailbox: folder.to_string(),
                uid: m.uid,
                offset: 0,
                length: 0,
            })
            .await
            .with_context(|| format!("reading {folder} UID {}", m.uid))?
            .into_inner();
        let mut data = Vec::with_capacity(m.size as usize);
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?.data);
        }
        Ok(data)
    }

    /// Appends one message; returns when the store has committed it.
    pub async fn append(
        &mut self,
        folder: &str,
        flags: &pb::Flags,
        date: i64,
        tz: i32,
        data: Vec<u8>,
    ) -> anyhow::Result<()> {
        let mut chunks = vec![pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                mailbox: folder.to_string(),
                flags: Some(flags.clone()),
                internal_date: date,
                internal_date_tz: tz,
                size: data.len() as u64,
                // The import keeps its own count check per folder; two
                // equal messages in a folder are both kept.
                idempotency_key: String::new(),
            })),
        }];
        for part in data.chunks(mailbox_api::CHUNK_SIZE) {
            chunks.push(pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Data(part.to_vec())),
            });
        }
        self.client
            .append(tokio_stream::iter(chunks))
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        Ok(())
    }
}
