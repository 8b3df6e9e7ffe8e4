//! A phone's whole client: the encrypted store, the device's identity and enrolment, the typed
//! documents, tips and their receipts, and sync with its server — everything a phone app, the
//! field-device CLI and the phone bindings drive, in one place.
//!
//! It stays sans-io like the rest of the core: the store is its only I/O; time (`now`) and
//! randomness come in as arguments; enrolment and sync produce sealed envelope bytes to carry and
//! take the sealed answer back ([`Device::enrol_request`] / [`Device::enrol_response`],
//! [`Device::sync_request`] / [`Device::sync_response`]). Every exchange goes through the core's
//! one client driver ([`crate::client`]), which seals and opens; the `http` feature drives it
//! over HTTP (`Device::sync_http`); apps may carry the bytes any other way, a file on a USB
//! stick included ([`Device::export_bundle`] / [`Device::import_bundle`] keep the exchange in
//! the store between processes).
//!
//! Documents are kept in memory once opened (an activities document of a busy year costs about a
//! second to load on a phone) and written to the store after every user action, one automerge
//! commit per action.

mod bundle;
mod chunks;
mod cover;
mod enrolment;
mod error;
#[cfg(feature = "http")]
mod http;
mod records;
mod sync;
mod tips;

use std::collections::BTreeMap;
use std::path::Path;

use automerge::AutoCommit;
use rand_core::CryptoRngCore;

pub use bundle::{BundleError, BundleKind, decode_bundle, encode_bundle};
pub use chunks::{ChunkAsk, ChunkProgress, ChunkUpload, ChunkUploadReport};
pub use cover::{
    EvidencePace, MAX_SLOTS_PER_EXCHANGE, SLOT_BUCKET, SLOTS_PER_EXCHANGE, slots_per_chunk,
};
pub use enrolment::{Enrolment, PendingEnrolment};
pub use error::{DeviceError, Result};
#[cfg(feature = "http")]
pub use http::{DEFAULT_TIMEOUT, unix};
pub use sync::{DeviceScope, PhoneSync, SyncReport, SyncSession, SyncStep};
pub use tips::ReceivedReply;

use crate::model::{DocName, PrivateDoc, ProvinceCode};
use crate::seal::{PublicKey, StaticKeyPair};
use crate::store::{Argon2Params, StorageKey, Store};

/// Key-value namespaces the device keeps in its store.
mod ns {
    pub const DEVICE: &str = "device";
    pub const SYNC_STATE: &str = "sync-state";
    pub const MAILBOX_CURSOR: &str = "mailbox-cursor";
    pub const OUTBOX: &str = "outbox";
    /// Tips the server acknowledged that no finished backup of it holds yet: the server's mark
    /// at the acknowledgement, then the envelope (see `mailbox::Mark`).
    pub const HELD: &str = "held";
    /// The last backup mark each server stated.
    pub const BACKUP_MARK: &str = "backup-mark";
    pub const REPLY_KEYS: &str = "reply-keys";
    pub const REPLIES: &str = "replies";
    pub const BUNDLE: &str = "bundle";
}
const IDENTITY: &[u8] = b"identity";
const ENROLMENT: &[u8] = b"enrolment";

/// One phone's client. Open it once per store file.
pub struct Device {
    store: Store,
    keys: StaticKeyPair,
    enrolment: Option<Enrolment>,
    docs: BTreeMap<String, AutoCommit>,
    /// The time last given ([`Device::set_clock`], or a sync's `now`), in milliseconds since the
    /// Unix epoch: when the next actor this device makes is born. 0 until a time is given.
    clock_ms: u64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("public_key", &self.keys.public())
            .field("enrolment", &self.enrolment)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Opens (or creates) the device's store with a key from the platform keystore.
    pub fn open(
        path: impl AsRef<Path>,
        key: StorageKey,
        rng: &mut (impl CryptoRngCore + Send + Clone + 'static),
    ) -> Result<Device> {
        let store = Store::open(path, key, rng.clone())?;
        Device::from_store(store, rng)
    }

    /// Opens (or creates) the device's store with a passphrase (Argon2id).
    pub fn open_with_passphrase(
        path: impl AsRef<Path>,
        passphrase: &str,
        params: Argon2Params,
        rng: &mut (impl CryptoRngCore + Send + Clone + 'static),
    ) -> Result<Device> {
        let store = Store::open_with_passphrase(path, passphrase, params, rng.clone())?;
        Device::from_store(store, rng)
    }

    fn from_store(mut store: Store, rng: &mut impl CryptoRngCore) -> Result<Device> {
        let keys = match store.get(ns::DEVICE, IDENTITY)? {
            Some(secret) => {
                let secret: [u8; 32] = secret
                    .as_slice()
                    .try_into()
                    .map_err(|_| DeviceError::Corrupt("identity key"))?;
                StaticKeyPair::from_secret_bytes(&secret)?
            }
            None => {
                let keys = StaticKeyPair::generate(rng);
                store.put(ns::DEVICE, IDENTITY, keys.secret_bytes().as_slice())?;
                keys
            }
        };
        let enrolment = match store.get(ns::DEVICE, ENROLMENT)? {
            Some(bytes) => Some(Enrolment::decode(&bytes)?),
            None => None,
        };
        Ok(Device {
            store,
            keys,
            enrolment,
            docs: BTreeMap::new(),
            clock_ms: 0,
        })
    }

    /// Tells the device what time it is, for the actors it makes from now on: an actor id
    /// begins with the time it was made, so it sorts after those a document already holds and
    /// every replica appends it instead of renumbering the document (`policy::authority`). A
    /// sync's `now` sets it too; an app sets it before each user action. A wrong clock costs
    /// only that renumbering.
    pub fn set_clock(&mut self, now: time::OffsetDateTime) {
        let ms = now.unix_timestamp_nanos() / 1_000_000;
        self.clock_ms = u64::try_from(ms).unwrap_or(0);
    }

    /// This device's static public key (what the server lists it under).
    pub fn public_key(&self) -> PublicKey {
        *self.keys.public()
    }

    /// The enrolment, once [`Device::enrol_response`] succeeded.
    pub fn enrolment(&self) -> Option<&Enrolment> {
        self.enrolment.as_ref()
    }

    fn enrolled(&self) -> Result<&Enrolment> {
        self.enrolment.as_ref().ok_or(DeviceError::NotEnrolled)
    }

    /// The underlying store, for tests and tools that inspect it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A document from the cache, loading it from the store (or starting it empty) first. A
    /// loaded document gets a fresh actor, so a store restored from an old copy can never reuse
    /// a sequence number the network has already seen; the actor starts with this device's tag
    /// (`policy::authority`), which is how servers know the device wrote it.
    fn doc(&mut self, name: &DocName, rng: &mut impl CryptoRngCore) -> Result<&mut AutoCommit> {
        let key = name.to_string();
        if !self.docs.contains_key(&key) {
            let doc = self.store.load_doc(&key)?.unwrap_or_default();
            let actor = self.fresh_actor(rng);
            self.docs.insert(key.clone(), doc.with_actor(actor));
        }
        self.docs
            .get_mut(&key)
            .ok_or(DeviceError::Corrupt("document cache"))
    }

    /// A new actor id for this device: born at its clock, its tag, then fresh randomness.
    fn fresh_actor(&self, rng: &mut impl CryptoRngCore) -> automerge::ActorId {
        let mut fresh = [0u8; crate::policy::authority::FRESH_BYTES];
        rng.fill_bytes(&mut fresh);
        crate::policy::authority::device_actor(self.keys.public().as_bytes(), self.clock_ms, fresh)
    }

    /// Writes a cached document's new changes to the store.
    fn persist(&mut self, name: &str) -> Result<()> {
        if let Some(doc) = self.docs.get_mut(name) {
            self.store.save_doc(name, doc)?;
        }
        Ok(())
    }

    /// Names of the shared documents this device holds locally.
    fn local_shared_docs(&self) -> Result<Vec<DocName>> {
        let mut names: Vec<DocName> = self
            .store
            .list_docs()?
            .iter()
            .chain(self.docs.keys())
            .filter_map(|n| DocName::parse(n).ok())
            .filter(DocName::is_shareable)
            .collect();
        names.sort_by_key(|n| n.to_string());
        names.dedup();
        Ok(names)
    }

    fn check_scope(&self, code: ProvinceCode) -> Result<()> {
        match &self.enrolment {
            Some(e) if !e.provinces.contains(&code) => {
                Err(DeviceError::OutOfScope(code.as_str().to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Reads the device's private document (drafts, settings, tip receipts).
    pub fn private<T>(
        &mut self,
        rng: &mut impl CryptoRngCore,
        f: impl FnOnce(&PrivateDoc) -> T,
    ) -> Result<T> {
        let doc = std::mem::take(self.doc(&DocName::Private, rng)?);
        let private = PrivateDoc::from_automerge(doc)?;
        let out = f(&private);
        self.docs
            .insert(DocName::Private.to_string(), private.into_inner());
        Ok(out)
    }

    /// Changes the private document in one commit and saves it.
    pub fn edit_private<T>(
        &mut self,
        rng: &mut impl CryptoRngCore,
        f: impl FnOnce(&mut PrivateDoc) -> crate::model::Result<T>,
    ) -> Result<T> {
        let name = DocName::Private.to_string();
        let doc = std::mem::take(self.doc(&DocName::Private, rng)?);
        let mut private = PrivateDoc::from_automerge(doc)?;
        let out = f(&mut private);
        self.docs.insert(name.clone(), private.into_inner());
        let out = out?;
        self.persist(&name)?;
        Ok(out)
    }
}
