//! The desk's exchanges with HQ as conversations for the one client driver
//! ([`crate::client::Driver`]), each a [`Typed`] one (admin requests out, admin answers in): each
//! reads and writes the [`Desk`] it runs on (its context), so what an answer brings is stored as
//! it arrives and a loss rewinds only the step in flight.
//!
//! - [`Pull`]: pages of tips from the cursor until HQ has no more (or `max_pages`).
//! - [`Ack`]: the acknowledgements that release what the desk holds, one page per exchange.
//! - [`Fetch`](super::Fetch): a tip's missing attachment chunks, a batch per exchange.
//!
//! Enrolment and a reply are one request each: [`crate::client::talk::enrol`] and
//! [`crate::client::talk::admin`], driven with [`Desk::hq_driver`].

use super::{Desk, DeskError, Fetch, Pulled, Released};
use crate::client::talk::Typed;
use crate::client::{Route, Turn};
use crate::protocol::{AdminRequest, AdminResponse};

/// Pulling tips a page at a time from the desk's cursor.
#[derive(Debug, Clone, Default)]
pub struct Pull {
    /// What the pages so far brought.
    pub counts: Pulled,
    /// Pages answered.
    pub pages: usize,
    /// Tips on the last page.
    pub last_page: usize,
    /// HQ said more tips wait after the last page.
    pub more: bool,
    max_pages: usize,
}

impl Pull {
    /// At most `max_pages` pages (then [`Pull::more`] says whether to pull again).
    pub fn new(max_pages: usize) -> Self {
        Pull {
            max_pages,
            ..Pull::default()
        }
    }
}

impl Typed for Pull {
    const ROUTE: Route = Route::Admin;
    type Ctx = Desk;
    type Request = AdminRequest;
    type Answer = AdminResponse;
    type Outcome = ();
    type Error = DeskError;

    fn next_request(&mut self, desk: &mut Desk) -> Result<Option<AdminRequest>, DeskError> {
        if self.pages >= self.max_pages {
            return Ok(None);
        }
        Ok(Some(desk.pull_request()?))
    }

    fn take_answer(
        &mut self,
        desk: &mut Desk,
        answer: AdminResponse,
    ) -> Result<Turn<()>, DeskError> {
        let page = desk.take_page(answer)?;
        self.pages += 1;
        self.counts += page.counts;
        self.last_page = page.tips;
        self.more = page.more;
        Ok(if page.more && self.pages < self.max_pages {
            Turn::Again
        } else {
            Turn::Done(())
        })
    }

    // The cursor moves only once a page is stored: a lost page is asked again.
}

/// Releasing at HQ what the desk holds, one acknowledgement per exchange.
#[derive(Debug, Clone)]
pub struct Ack {
    requests: Vec<AdminRequest>,
    next: usize,
    /// What HQ released so far.
    pub released: Released,
}

impl Ack {
    /// The acknowledgements [`Desk::ack_requests`] makes.
    pub fn new(requests: Vec<AdminRequest>) -> Self {
        Ack {
            requests,
            next: 0,
            released: Released::default(),
        }
    }
}

impl Typed for Ack {
    const ROUTE: Route = Route::Admin;
    type Ctx = Desk;
    type Request = AdminRequest;
    type Answer = AdminResponse;
    type Outcome = Released;
    type Error = DeskError;

    fn next_request(&mut self, _: &mut Desk) -> Result<Option<AdminRequest>, DeskError> {
        Ok(self.requests.get(self.next).cloned())
    }

    fn take_answer(
        &mut self,
        desk: &mut Desk,
        answer: AdminResponse,
    ) -> Result<Turn<Released>, DeskError> {
        let Some(request) = self.requests.get(self.next) else {
            return Err(DeskError::UnexpectedAnswer("an acknowledgement"));
        };
        desk.take_released(request, answer, &mut self.released)?;
        self.next += 1;
        Ok(if self.next < self.requests.len() {
            Turn::Again
        } else {
            Turn::Done(self.released)
        })
    }

    // Nothing leaves the unreleased sets until HQ answers: a lost page is sent again.
}

impl Typed for Fetch {
    const ROUTE: Route = Route::Admin;
    type Ctx = Desk;
    type Request = AdminRequest;
    type Answer = AdminResponse;
    type Outcome = ();
    type Error = DeskError;

    fn next_request(&mut self, desk: &mut Desk) -> Result<Option<AdminRequest>, DeskError> {
        self.poll_request(desk)
    }

    fn take_answer(
        &mut self,
        desk: &mut Desk,
        answer: AdminResponse,
    ) -> Result<Turn<()>, DeskError> {
        self.handle(desk, answer)?;
        Ok(Turn::Again)
    }

    fn lost(&mut self, _: &mut Desk) {
        Fetch::lost(self);
    }
}
