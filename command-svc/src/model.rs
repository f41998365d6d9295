//! The whole write model: the matching book plus the idempotency index. Both are
//! folds of the same events; [`WriteModel::apply`] is the one fold replay and the
//! writer use.

use crate::book::{Book, FoldError};
use crate::idempotency::IdempotencyIndex;
use shared_events::Envelope;

/// What the writer decides against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteModel {
    pub book: Book,
    pub keys: IdempotencyIndex,
}

impl WriteModel {
    /// Folds one event in (pure: no I/O, no clock).
    pub fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        self.book.apply(&env.event)?;
        self.keys.record(env);
        Ok(())
    }
}
