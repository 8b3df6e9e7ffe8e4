//! Pulling tips from HQ a page at a time from a cursor (HQ's arrival number of the last tip
//! seen), and releasing at HQ what the desk holds. The cursor moves only once a page's tips are
//! stored, and a tip's id joins the unreleased set as it is stored, so a pull cut anywhere
//! loses nothing and a release never names a tip the desk does not hold.

use super::{Desk, DeskError, Result, attachments, ns};
use crate::attach::ChunkId;
use crate::mailbox::EnvelopeId;
use crate::protocol::{AdminRequest, AdminResponse};

const CURSOR: &[u8] = b"cursor";
/// Most tips asked for per page.
pub const PULL_PAGE: u16 = 64;
/// Most ids acknowledged per exchange.
const ACK_PAGE: usize = 1024;

/// What storing a batch of tips found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Tips the desk did not hold before.
    pub new: usize,
    /// Tips it held already.
    pub known: usize,
    /// Envelopes that did not open with this desk's key (sealed to another desk, or damaged).
    pub foreign: usize,
    /// Cover slots that carried nothing (dropped).
    pub dummies: usize,
    /// Cover slots that carried a part of a tip or of evidence.
    pub parts: usize,
    /// Tips put together from their slots in this batch (their last part arrived). Each is
    /// counted in `new` too unless the desk held it already.
    pub tips_put_together: usize,
    /// Evidence chunks put together from their slots in this batch, now kept with the desk's
    /// chunks.
    pub chunks_put_together: usize,
}

impl std::ops::AddAssign for Pulled {
    fn add_assign(&mut self, other: Pulled) {
        self.new += other.new;
        self.known += other.known;
        self.foreign += other.foreign;
        self.dummies += other.dummies;
        self.parts += other.parts;
        self.tips_put_together += other.tips_put_together;
        self.chunks_put_together += other.chunks_put_together;
    }
}

/// What one page of a pull brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullPage {
    /// Tips on the page.
    pub tips: usize,
    pub counts: Pulled,
    /// More tips wait at HQ: ask again.
    pub more: bool,
}

/// What HQ released in one or more acknowledgements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Tip ids acknowledged.
    pub tips: u64,
    /// Tips HQ dropped now, and ids it no longer held.
    pub released: u64,
    pub gone: u64,
    /// Chunk ids acknowledged.
    pub chunks: u64,
    /// Chunks HQ dropped now, and ids it did not know.
    pub chunks_released: u64,
    pub chunks_gone: u64,
}

impl Desk {
    /// The pull cursor (HQ's arrival number of the last tip seen).
    pub fn cursor(&self) -> Result<u64> {
        Ok(match self.store.get(ns::HQ, CURSOR)? {
            Some(b) => b.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        })
    }

    /// The next page to ask HQ for.
    pub fn pull_request(&self) -> Result<AdminRequest> {
        Ok(AdminRequest::Pull {
            after: self.cursor()?,
            max: PULL_PAGE,
        })
    }

    /// Stores a page of tips HQ answered a pull with, then moves the cursor.
    pub fn take_page(&mut self, response: AdminResponse) -> Result<PullPage> {
        let AdminResponse::Tips { tips, cursor, more } = response else {
            return Err(DeskError::UnexpectedAnswer("a pull"));
        };
        let count = tips.len();
        let counts = self.take_tips(tips.into_iter().map(|t| t.item).collect(), true)?;
        // The cursor moves only once the page's tips are stored, and never back.
        let cursor = cursor.max(self.cursor()?);
        self.store.put(ns::HQ, CURSOR, &cursor.to_be_bytes())?;
        Ok(PullPage {
            tips: count,
            counts,
            more,
        })
    }

    /// How many tips held here HQ has not released yet.
    pub fn unreleased_tips(&self) -> Result<usize> {
        Ok(self.store.list(ns::UNRELEASED)?.len())
    }

    /// The acknowledgements that release at HQ every tip pulled and every chunk of a saved
    /// attachment, a page each; empty when there is nothing to release.
    pub fn ack_requests(&self) -> Result<Vec<AdminRequest>> {
        let ids: Vec<EnvelopeId> = self
            .store
            .list(ns::UNRELEASED)?
            .into_iter()
            .filter_map(|(key, _)| key.try_into().ok().map(EnvelopeId))
            .collect();
        let chunks = attachments::unreleased(&self.store)?;
        let tip_pages = ids.chunks(ACK_PAGE).map(|p| AdminRequest::Ack {
            ids: p.to_vec(),
            chunks: Vec::new(),
        });
        let chunk_pages = chunks.chunks(ACK_PAGE).map(|p| AdminRequest::Ack {
            ids: Vec::new(),
            chunks: p.to_vec(),
        });
        Ok(tip_pages.chain(chunk_pages).collect())
    }

    /// Takes HQ's answer to one acknowledgement from [`Desk::ack_requests`]: what it names
    /// leaves the unreleased sets, and the counts join `total`.
    pub fn take_released(
        &mut self,
        request: &AdminRequest,
        response: AdminResponse,
        total: &mut Released,
    ) -> Result<()> {
        let AdminRequest::Ack { ids, chunks } = request else {
            return Err(DeskError::UnexpectedAnswer("an acknowledgement"));
        };
        let AdminResponse::Released {
            released,
            unknown,
            chunks_released,
            chunks_unknown,
        } = response
        else {
            return Err(DeskError::UnexpectedAnswer("an acknowledgement"));
        };
        for id in ids {
            self.store.delete(ns::UNRELEASED, &id.0)?;
        }
        for id in chunks {
            self.store.delete(ns::UNRELEASED_CHUNKS, &id.0)?;
        }
        total.tips += ids.len() as u64;
        total.chunks += chunks.len() as u64;
        total.released += u64::from(released);
        total.gone += u64::from(unknown);
        total.chunks_released += u64::from(chunks_released);
        total.chunks_gone += u64::from(chunks_unknown);
        Ok(())
    }

    /// Chunk ids of saved attachments waiting to be released at HQ.
    pub fn unreleased_chunks(&self) -> Result<Vec<ChunkId>> {
        attachments::unreleased(&self.store)
    }
}
