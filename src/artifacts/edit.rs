//! Server-side edits to a live document, made the way a person would make them: the
//! smallest text insertions and deletions that turn the current text into the new one, so
//! concurrent editors keep converging.

use crate::artifacts::store::TEXT;
use crate::artifacts::textmerge::{Unit, text_edits};
use yrs::{Doc, Text, Transact};

/// Applies the edits turning `current` into `new_text` to `doc` (a private copy) and
/// returns them as one Yjs update; `None` when the texts are equal.
pub fn replace_text(doc: &Doc, current: &str, new_text: &str) -> Option<Vec<u8>> {
    if current == new_text {
        return None;
    }
    let text = doc.get_or_insert_text(TEXT);
    let mut txn = doc.transact_mut();
    // Offsets in the unit the document counts in (yrs' default: bytes).
    for edit in text_edits(current, new_text, Unit::Bytes) {
        if edit.delete > 0 {
            text.remove_range(&mut txn, edit.start as u32, edit.delete as u32);
        }
        if !edit.insert.is_empty() {
            text.insert(&mut txn, edit.start as u32, &edit.insert);
        }
    }
    Some(txn.encode_update_v1())
}
