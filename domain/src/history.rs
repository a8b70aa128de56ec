//! Resources as they were: one aggregate replayed from its events, and a
//! folder's children replayed from a tenant's folder and file events. The
//! history endpoint reads the events and words the answer; the folding is
//! here.

use std::collections::BTreeMap;

use crate::aggregate::Aggregate;
use crate::any_event::{AnyEvent, DecodedEvent};
use crate::drive::file::FileEvent;
use crate::drive::folder::FolderEvent;
use crate::event::RecordedEvent;

/// An aggregate's state after `events` (its stream, in order).
pub fn replay<A: Aggregate>(events: &[RecordedEvent]) -> Result<A, serde_json::Error> {
    let mut state = A::default();
    for e in events {
        let ev: A::Event = e.decode()?;
        state.evolve(&ev);
    }
    Ok(state)
}

/// Folder or file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Folder,
    File,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Folder => "folder",
            ItemKind::File => "file",
        }
    }
}

/// One item of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub kind: ItemKind,
    pub name: String,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: ItemKind,
    parent: Option<String>,
    name: String,
    live: bool,
}

/// Every folder and file of a tenant, folded from its events: where each
/// sits, what it is called, whether it is live.
#[derive(Debug, Default)]
pub struct Listing {
    items: BTreeMap<String, Entry>,
}

impl Listing {
    /// Whether events of this type can change a listing (the rest need not
    /// be decoded).
    pub fn concerns(event_type: &str) -> bool {
        event_type.starts_with("folder-") || event_type.starts_with("file-")
    }

    /// Folds one event; other families are ignored. A folder or file event
    /// that did not decode is an error (the log is not what this build
    /// wrote).
    pub fn apply(&mut self, e: &DecodedEvent) -> Result<(), String> {
        let id = &e.stream_id;
        match &e.event {
            AnyEvent::Folder(ev) => match ev {
                FolderEvent::FolderCreated {
                    parent_id, name, ..
                } => self.insert(id, ItemKind::Folder, parent_id.map(|p| p.to_string()), name),
                FolderEvent::FolderRenamed { name, .. } => self.rename(id, name),
                FolderEvent::FolderMoved { parent_id, .. } => {
                    self.place(id, parent_id.map(|p| p.to_string()))
                }
                FolderEvent::FolderDeleted { .. } | FolderEvent::FolderPurged { .. } => {
                    self.set_live(id, false)
                }
                FolderEvent::FolderRestored { .. } => self.set_live(id, true),
                // A listing shows no owners.
                FolderEvent::FolderOwnershipTransferred { .. } => {}
            },
            AnyEvent::File(ev) => match ev {
                FileEvent::FileCreated {
                    folder_id, name, ..
                } => self.insert(id, ItemKind::File, folder_id.map(|f| f.to_string()), name),
                FileEvent::FileRenamed { name, .. } => self.rename(id, name),
                FileEvent::FileMoved { folder_id, .. } => {
                    self.place(id, folder_id.map(|f| f.to_string()))
                }
                FileEvent::FileDeleted { .. } | FileEvent::FilePurged { .. } => {
                    self.set_live(id, false)
                }
                FileEvent::FileRestored { .. } => self.set_live(id, true),
                FileEvent::FileVersionAdded { .. }
                | FileEvent::FileVersionPruned { .. }
                | FileEvent::FileOwnershipTransferred { .. } => {}
            },
            AnyEvent::Undecodable(why)
                if e.event_type.starts_with("folder-") || e.event_type.starts_with("file-") =>
            {
                return Err(why.clone());
            }
            _ => {}
        }
        Ok(())
    }

    fn insert(&mut self, id: &str, kind: ItemKind, parent: Option<String>, name: &str) {
        self.items.insert(
            id.to_owned(),
            Entry {
                kind,
                parent,
                name: name.to_owned(),
                live: true,
            },
        );
    }

    fn rename(&mut self, id: &str, name: &str) {
        if let Some(i) = self.items.get_mut(id) {
            i.name = name.to_owned();
        }
    }

    fn place(&mut self, id: &str, parent: Option<String>) {
        if let Some(i) = self.items.get_mut(id) {
            i.parent = parent;
        }
    }

    fn set_live(&mut self, id: &str, live: bool) {
        if let Some(i) = self.items.get_mut(id) {
            i.live = live;
        }
    }

    /// The live children of `folder`: folders first, then by name.
    pub fn children(&self, folder: &str) -> Vec<Item> {
        let mut out: Vec<Item> = self
            .items
            .iter()
            .filter(|(_, e)| e.live && e.parent.as_deref() == Some(folder))
            .map(|(id, e)| Item {
                id: id.clone(),
                kind: e.kind,
                name: e.name.clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            (a.kind != ItemKind::Folder, &a.name).cmp(&(b.kind != ItemKind::Folder, &b.name))
        });
        out
    }
}
