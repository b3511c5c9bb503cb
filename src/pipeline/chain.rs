//! The journal and the event log of one study, written together: every
//! record is journaled (fsynced) first, then the events it implies emitted.

use super::events::{events_for, EventLog};
use crate::search::history::{view, StudyView};
use crate::search::journal::{Entry, Journal, Record};

/// The journal and the event log, written together.
pub(super) struct Chain {
    pub(super) journal: Journal,
    pub(super) events: EventLog,
    pub(super) study: String,
    pub(super) goal: crate::confidence::Goal,
    /// The champion measured on this study's data (see `champion`).
    pub(super) remeasured: Option<super::champion::Remeasured>,
}

impl Chain {
    /// This study's `trial_finished` records, by trial (the report's rows).
    pub(super) fn finished_records(&self) -> impl Iterator<Item = &Record> {
        self.journal
            .study(&self.study)
            .map(|e| &e.record)
            .filter(|r| matches!(r, Record::TrialFinished { .. }))
    }

    /// Journals `record` (fsynced), then emits the events it implies.
    pub(super) fn record(&mut self, record: Record) -> anyhow::Result<Entry> {
        let entry = self.journal.append(&self.study, record)?;
        crate::store::fault::point("events.emit");
        for ev in events_for(&entry, self.goal) {
            self.events.emit(ev)?;
        }
        Ok(entry)
    }

    /// Where the study stands, from its journal records.
    pub(super) fn view(&self) -> StudyView {
        view(self.journal.study(&self.study))
    }
}
