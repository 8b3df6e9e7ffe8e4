//! The investigators' tip desk, as the phone has [`crate::device::Device`]: the only key that
//! opens tips, the key that hashes member codes, and the desk's own encrypted store (tips pulled
//! from HQ, the registry of issued codes, the replies sent, attachment chunks fetched). HQ only
//! carries sealed envelopes; the desk enrols at HQ as an `admin` device and speaks the sealed
//! admin exchange with it: pull tips a page at a time from a cursor, push sealed replies, fetch
//! attachment chunks, release what it holds.
//!
//! Like the rest of the core it does no I/O but its store and reads no clock: time (`now`) and
//! randomness come in as arguments, and every step returns a typed result for a front end to
//! show (`phakhi tipdesk` prints them). Every exchange with HQ goes through the one client
//! driver ([`crate::client::Driver`], built by [`Desk::hq_driver`] and [`Desk::enrol`]): the
//! desk's exchanges are [`Conversation`](crate::client::Conversation)s that run on the desk
//! ([`Pull`], [`Ack`], [`Fetch`]; a reply is one admin request), so what an answer brings is
//! stored as it arrives and a lost answer rewinds only the step in flight. Call order:
//!
//! - enrol: [`Desk::enrol`] → drive → [`Desk::enrolled`];
//! - pull: drive [`Pull`] (pages from the cursor, stored as they come);
//! - release: drive [`Ack`] over [`Desk::ack_requests`];
//! - reply: [`Desk::prepare_reply`] → drive [`PreparedReply::request`] as a one-shot →
//!   [`Desk::record_reply`] once HQ's answer holds it ([`PreparedReply::held_by`]);
//! - attachments: drive [`Desk::fetch_attachments`]'s [`Fetch`], then [`Desk::outcomes`] and
//!   [`Desk::record_saved`] for each file written.
//!
//! The store's records (a version byte, then JSON) and namespaces are those of the first
//! `phakhi tipdesk`, so a desk folder made by any version opens.

mod attachments;
mod cover;
mod error;
mod keys;
mod link;
mod pull;
mod replies;
mod talk;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

pub use attachments::{
    Assembled, Fetch, FetchStep, Held, LocalAttachment, Outcome, Saved, safe_file_name,
};
pub use error::{DeskError, Result};
pub use keys::{KEY_FILE_VERSION, KeyFileError, TipDeskKeys};
pub use link::{HqEnrolment, PendingEnrolment};
pub use pull::{PULL_PAGE, PullPage, Pulled, Released};
pub use replies::{PreparedReply, SentReply, status_name};
pub use talk::{Ack, Pull};

use crate::mailbox::MailItem;
use crate::seal::{MemberCode, PublicKey, ReceiptId, Tip, TipCategory, open_tip};
use crate::store::{StorageKey, Store};

/// Version byte of the desk's stored records.
const RECORD_VERSION: u8 = 1;
/// Longest alias a member code is issued to, in characters.
pub const MAX_ALIAS_CHARS: usize = 100;

/// Key-value namespaces of the desk's store.
mod ns {
    pub const CODES: &str = "codes";
    pub const TIPS: &str = "tips";
    pub const REPLIES: &str = "replies";
    /// The desk's device key, its enrolment at HQ and the pull cursor.
    pub const HQ: &str = "hq";
    /// Ids of pulled tips not yet released at HQ.
    pub const UNRELEASED: &str = "unreleased";
    /// Encrypted chunks fetched from HQ, by id.
    pub const CHUNKS: &str = "chunks";
    /// Attachments written out, by manifest id.
    pub const SAVED: &str = "saved";
    /// Ids of chunks of saved attachments not yet released at HQ.
    pub const UNRELEASED_CHUNKS: &str = "unreleased-chunks";
}

/// One tip desk. Open it once per store file.
pub struct Desk {
    keys: TipDeskKeys,
    store: Store,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("public_key", self.keys.keys.public())
            .finish_non_exhaustive()
    }
}

/// A tip the desk holds, opened.
#[derive(Clone)]
pub struct HeldTip {
    pub tip: Tip,
    /// The province HQ routed it under (where replies go).
    pub province: String,
    /// Its place in the order the desk pulled tips, from 1.
    pub pulled: u64,
}

impl std::fmt::Debug for HeldTip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldTip")
            .field("receipt", &self.tip.receipt)
            .field("province", &self.province)
            .field("pulled", &self.pulled)
            .finish_non_exhaustive()
    }
}

/// What the member code in a tip says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A code this desk issued, to the member known by this alias.
    Member(String),
    /// A code this desk never issued (or one issued by a desk whose registry is gone).
    Unknown,
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sender::Member(alias) => write!(f, "valid member ({alias})"),
            Sender::Unknown => f.write_str("unknown code"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredTip {
    province: String,
    pulled: u64,
    envelope: String,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Serialising plain structs of strings and numbers cannot fail.
    out.extend(serde_json::to_vec(value).unwrap_or_default());
    out
}

fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            serde_json::from_slice(rest).map_err(|e| DeskError::Corrupt(format!("{what}: {e}")))
        }
        _ => Err(DeskError::Corrupt(format!("{what}: unknown version"))),
    }
}

/// The name a tip's category is shown and typed under.
pub fn category_name(c: TipCategory) -> &'static str {
    match c {
        TipCategory::Bribery => "bribery",
        TipCategory::ProcurementFraud => "procurement-fraud",
        TipCategory::AbuseOfPower => "abuse-of-power",
        TipCategory::Embezzlement => "embezzlement",
        TipCategory::Other => "other",
    }
}

impl Desk {
    /// Opens (or creates) the desk's store at `path` under the store key of `keys`.
    pub fn open(
        path: impl AsRef<std::path::Path>,
        keys: TipDeskKeys,
        rng: impl CryptoRngCore + Send + 'static,
    ) -> Result<Desk> {
        let store = Store::open(path, StorageKey::from_bytes(*keys.store_key), rng)?;
        Ok(Desk { keys, store })
    }

    /// The key tips are sealed to (what `phakhi admin invite --tip-desk-key` takes).
    pub fn public_key(&self) -> PublicKey {
        *self.keys.keys.public()
    }

    /// The desk's secrets, for a backup into shares.
    pub fn keys(&self) -> &TipDeskKeys {
        &self.keys
    }

    /// The underlying store, for tests and tools that inspect it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Issues a member network code for `alias`: returned once, only its keyed hash is kept.
    pub fn issue_code(&mut self, alias: &str, rng: &mut impl CryptoRngCore) -> Result<MemberCode> {
        let alias = alias.trim();
        if alias.is_empty() || alias.chars().count() > MAX_ALIAS_CHARS {
            return Err(DeskError::BadAlias);
        }
        let code = MemberCode::generate(rng);
        let hash = code.keyed_hash(&self.keys.code_key);
        self.store
            .put(ns::CODES, &hash.to_bytes(), alias.as_bytes())?;
        Ok(code)
    }

    /// The aliases codes were issued to, sorted.
    pub fn code_aliases(&self) -> Result<Vec<String>> {
        let mut aliases: Vec<String> = self
            .store
            .list(ns::CODES)?
            .into_iter()
            .map(|(_, alias)| String::from_utf8_lossy(&alias).into_owned())
            .collect();
        aliases.sort();
        Ok(aliases)
    }

    /// The registry of issued codes as stored (keyed hash, alias), for a sealed backup.
    pub fn code_registry(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.store.list(ns::CODES)?)
    }

    /// Brings back a registry of issued codes from a backup.
    pub fn restore_codes(&mut self, registry: &[(Vec<u8>, String)]) -> Result<()> {
        for (hash, alias) in registry {
            self.store.put(ns::CODES, hash, alias.as_bytes())?;
        }
        Ok(())
    }

    /// What a tip's member code says about its sender.
    pub fn sender(&self, code: &MemberCode) -> Result<Sender> {
        let hash = code.keyed_hash(&self.keys.code_key);
        Ok(match self.store.get(ns::CODES, &hash.to_bytes())? {
            Some(alias) => Sender::Member(String::from_utf8_lossy(&alias).into_owned()),
            None => Sender::Unknown,
        })
    }

    /// Opens and keeps the tips among `items` the desk does not hold yet. Tips that open, and
    /// cover slots, are remembered for release at HQ ([`Desk::ack_requests`]) when `release`
    /// is set.
    ///
    /// Most of what HQ hands over are cover slots (`cover.rs`): a dummy is dropped, a part of a
    /// tip or of an evidence chunk is kept until its message is whole; a tip whose last part
    /// arrived goes on as if it had been pulled whole, a chunk joins the desk's chunks.
    pub fn take_tips(&mut self, items: Vec<MailItem>, release: bool) -> Result<Pulled> {
        let mut counts = Pulled::default();
        let mut pulled = u64::try_from(self.store.list(ns::TIPS)?.len()).unwrap_or(u64::MAX);
        for mut item in items {
            let slot = cover::open(&mut self.store, &self.keys.keys, &item.envelope)?;
            let bare = matches!(slot, cover::Opened::NotASlot);
            if !bare && release {
                // The slot itself is what HQ holds: released like any pulled tip.
                self.store.put(ns::UNRELEASED, &item.id().0, &[])?;
            }
            match slot {
                cover::Opened::NotASlot => {}
                cover::Opened::Dummy => {
                    counts.dummies += 1;
                    continue;
                }
                cover::Opened::Part => {
                    counts.parts += 1;
                    continue;
                }
                cover::Opened::Chunk => {
                    counts.parts += 1;
                    counts.chunks_put_together += 1;
                    continue;
                }
                cover::Opened::Known => {
                    counts.known += 1;
                    continue;
                }
                cover::Opened::Damaged => {
                    counts.foreign += 1;
                    continue;
                }
                cover::Opened::Tip(envelope) => {
                    counts.parts += 1;
                    counts.tips_put_together += 1;
                    item.envelope = envelope;
                }
            }
            let Ok(tip) = open_tip(&self.keys.keys, &item.envelope) else {
                counts.foreign += 1;
                continue;
            };
            if release && bare {
                self.store.put(ns::UNRELEASED, &item.id().0, &[])?;
            }
            let key = tip.receipt.to_string();
            if self.store.get(ns::TIPS, key.as_bytes())?.is_some() {
                counts.known += 1;
                continue;
            }
            pulled += 1;
            let record = StoredTip {
                province: item.province.clone(),
                pulled,
                envelope: hex::encode(&item.envelope),
            };
            self.store.put(ns::TIPS, key.as_bytes(), &encode(&record))?;
            counts.new += 1;
        }
        Ok(counts)
    }

    /// Tips and evidence chunks of which only some cover slots arrived: the rest come with the
    /// phones' next exchanges.
    pub fn incomplete_messages(&self) -> Result<usize> {
        cover::incomplete(&self.store)
    }

    /// Every tip held, in the order they were pulled.
    pub fn tips(&self) -> Result<Vec<HeldTip>> {
        let mut out = Vec::new();
        for (_, value) in self.store.list(ns::TIPS)? {
            out.push(self.open_stored(&value)?);
        }
        out.sort_by_key(|o| o.pulled);
        Ok(out)
    }

    /// One tip by its receipt number (as the member typed it: spaces, case and look-alike
    /// characters are forgiven).
    pub fn tip(&self, receipt: &str) -> Result<HeldTip> {
        let canonical = ReceiptId::parse(receipt)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| receipt.trim().to_owned());
        match self.store.get(ns::TIPS, canonical.as_bytes())? {
            Some(value) => self.open_stored(&value),
            None => Err(DeskError::UnknownReceipt(receipt.to_owned())),
        }
    }

    fn open_stored(&self, value: &[u8]) -> Result<HeldTip> {
        let record: StoredTip = decode(value, "stored tip")?;
        let envelope = hex::decode(&record.envelope)
            .map_err(|e| DeskError::Corrupt(format!("stored tip: {e}")))?;
        let tip = open_tip(&self.keys.keys, &envelope)
            .map_err(|e| DeskError::Corrupt(format!("stored tip: {e}")))?;
        Ok(HeldTip {
            tip,
            province: record.province,
            pulled: record.pulled,
        })
    }
}
