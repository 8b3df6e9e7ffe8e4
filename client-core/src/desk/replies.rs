//! Replies to tips: sealed to the reply key the member's phone made for that tip, addressed to
//! the province HQ routed the tip under, and remembered here (in the store, like everything the
//! desk keeps) once HQ confirms it holds them.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::{Desk, DeskError, Result, decode, encode, ns};
use crate::mailbox::{EnvelopeId, EnvelopeKind, MailItem};
use crate::protocol::{AdminRequest, AdminResponse};
use crate::seal::{Reply, ReplyStatus, seal_reply};

/// A reply the desk sent, as it remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentReply {
    pub receipt: String,
    /// [`status_name`] of its status.
    pub status: String,
    pub message: String,
    /// When it was sent (Unix seconds).
    pub sent_at: i64,
    /// Its place in the order the desk sent replies, from 1.
    pub seq: u64,
}

/// A sealed reply, ready for HQ's mailbox.
#[derive(Debug, Clone)]
pub struct PreparedReply {
    /// The envelope, addressed to the tip's province.
    pub item: MailItem,
    pub id: EnvelopeId,
    pub receipt: String,
    pub status: ReplyStatus,
    pub message: String,
}

impl PreparedReply {
    /// The admin request that pushes it into HQ's mailbox.
    pub fn request(&self) -> AdminRequest {
        AdminRequest::PushReplies {
            replies: vec![self.item.clone()],
        }
    }

    /// Whether HQ's answer to [`PreparedReply::request`] says it holds the reply.
    pub fn held_by(&self, response: &AdminResponse) -> bool {
        matches!(response, AdminResponse::Stored { ids, .. } if ids.contains(&self.id))
    }
}

/// The name a reply status is shown and typed under.
pub fn status_name(s: ReplyStatus) -> &'static str {
    match s {
        ReplyStatus::Received => "received",
        ReplyStatus::UnderReview => "under-review",
        ReplyStatus::NeedsMoreInformation => "needs-more-information",
        ReplyStatus::Referred => "referred",
        ReplyStatus::Closed => "closed",
    }
}

impl Desk {
    /// Seals a reply to the tip with this receipt; nothing is stored until HQ holds it
    /// ([`Desk::record_reply`]).
    pub fn prepare_reply(
        &self,
        receipt: &str,
        status: ReplyStatus,
        message: String,
        rng: &mut impl CryptoRngCore,
    ) -> Result<PreparedReply> {
        let held = self.tip(receipt)?;
        let Some(reply_key) = held.tip.reply_key else {
            return Err(DeskError::NoReplyKey(receipt.to_owned()));
        };
        let reply = Reply {
            receipt: held.tip.receipt,
            status,
            message,
        };
        let envelope = seal_reply(rng, &reply_key, &reply).map_err(|source| DeskError::Seal {
            what: "reply",
            source,
        })?;
        Ok(PreparedReply {
            id: EnvelopeId::of(&envelope),
            item: MailItem {
                kind: EnvelopeKind::Reply,
                province: held.province.clone(),
                envelope,
            },
            receipt: held.tip.receipt.to_string(),
            status,
            message: reply.message.clone(),
        })
    }

    /// Remembers a reply HQ holds (or that was written into a stopped HQ's folder).
    pub fn record_reply(&mut self, reply: &PreparedReply, now_unix: i64) -> Result<SentReply> {
        let sent = SentReply {
            receipt: reply.receipt.clone(),
            status: status_name(reply.status).to_owned(),
            message: reply.message.clone(),
            sent_at: now_unix,
            seq: u64::try_from(self.store.list(ns::REPLIES)?.len()).unwrap_or(u64::MAX) + 1,
        };
        self.store.put(ns::REPLIES, &reply.id.0, &encode(&sent))?;
        Ok(sent)
    }

    /// The replies sent to one tip, oldest first.
    pub fn replies(&self, receipt: &str) -> Result<Vec<SentReply>> {
        let mut out = Vec::new();
        for (_, value) in self.store.list(ns::REPLIES)? {
            let reply: SentReply = decode(&value, "sent reply")?;
            if reply.receipt == receipt {
                out.push(reply);
            }
        }
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }
}
