//! Opening a raw document by its name. The store and the sync engine know documents only as a
//! name and an `AutoCommit`; this is the one switch that turns that pair into the right typed
//! document, checking that the content matches the name.

use automerge::AutoCommit;

use super::activities::ActivitiesDoc;
use super::directory::DirectoryDoc;
use super::doc_name::DocName;
use super::error::Result;
use super::private::PrivateDoc;
use super::province::ProvinceDoc;

/// Any typed document.
#[derive(Debug)]
pub enum AnyDoc {
    Directory(DirectoryDoc),
    Province(ProvinceDoc),
    Activities(ActivitiesDoc),
    Private(PrivateDoc),
}

impl AnyDoc {
    /// Opens `doc` as the document called `name`; an empty document (nothing synced yet) is
    /// accepted, a document whose header names another kind, province, year or a newer schema is
    /// refused.
    pub fn open(name: DocName, doc: AutoCommit) -> Result<Self> {
        Ok(match name {
            DocName::Directory => Self::Directory(DirectoryDoc::from_automerge(doc)?),
            DocName::Private => Self::Private(PrivateDoc::from_automerge(doc)?),
            DocName::Province(code) => Self::Province(ProvinceDoc::open(code, doc)?),
            DocName::Activities(code, year) => {
                Self::Activities(ActivitiesDoc::open(code, year, doc)?)
            }
        })
    }

    /// The document's name.
    pub fn name(&self) -> DocName {
        match self {
            Self::Directory(_) => DocName::Directory,
            Self::Private(_) => DocName::Private,
            Self::Province(doc) => DocName::Province(doc.province()),
            Self::Activities(doc) => DocName::Activities(doc.province(), doc.year()),
        }
    }

    /// The underlying automerge document.
    pub fn doc(&self) -> &AutoCommit {
        match self {
            Self::Directory(d) => d.doc(),
            Self::Private(d) => d.doc(),
            Self::Province(d) => d.doc(),
            Self::Activities(d) => d.doc(),
        }
    }

    /// The underlying automerge document, mutable.
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        match self {
            Self::Directory(d) => d.doc_mut(),
            Self::Private(d) => d.doc_mut(),
            Self::Province(d) => d.doc_mut(),
            Self::Activities(d) => d.doc_mut(),
        }
    }

    /// Gives the automerge document back.
    pub fn into_inner(self) -> AutoCommit {
        match self {
            Self::Directory(d) => d.into_inner(),
            Self::Private(d) => d.into_inner(),
            Self::Province(d) => d.into_inner(),
            Self::Activities(d) => d.into_inner(),
        }
    }
}
