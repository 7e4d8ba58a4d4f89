//! Pure text diffing and merging for artifacts: unified diffs, line-based three-way merges (diff3 / `git merge-file`
//! semantics) with explicit conflict resolution, and minimal edits that turn one text into another so a new version
//! can be applied to a live CRDT text as ordinary edits.
//!
//! Nothing here does I/O. All diffs use `similar`'s Myers implementation under a deadline, so pathological inputs
//! degrade to a coarser (but still correct) result instead of taking unbounded time.
//!
//! Lines are split on `\n` only and keep their terminator (`"a\r\n"` is one line, a final line without `\n` is its
//! own distinct line), so texts with or without a final newline and with any line endings round-trip exactly.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::Range;
use std::time::{Duration, Instant};

use similar::algorithms::DiffHook;

/// Time budget of one line diff (a unified diff, or one side of a three-way merge). When it runs out the diff
/// degrades to coarser hunks; the output stays correct.
const LINE_DIFF_TIMEOUT: Duration = Duration::from_secs(2);

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Splits `text` into lines that keep their trailing `\n`; only the last line can lack one.
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Maps equal lines to equal integers, so diffs compare integers instead of strings.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, usize>,
}

impl<'a> Interner<'a> {
    fn intern(&mut self, lines: &[&'a str]) -> Vec<usize> {
        lines
            .iter()
            .map(|line| {
                let next = self.ids.len();
                *self.ids.entry(line).or_insert(next)
            })
            .collect()
    }
}

/// A maximal run of changes: elements `base` of the old text were replaced by elements `side` of the new one. Two
/// hunks of one diff are always separated by at least one unchanged element.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk {
    base: Range<usize>,
    side: Range<usize>,
}

/// Diffs `old` against `new` into hunks: a Myers diff (bounded by `deadline`, past which it degrades to coarser
/// hunks) whose changes are then slid like git's xdiff does (see [`compact`]), so that hunk placement — which
/// decides what a three-way merge considers overlapping — matches `git merge-file` and `git diff` as closely as
/// possible. Where several shortest edit scripts exist, `similar`'s Myers can still pick a different one than xdiff
/// (rarely, and only in repetitive text); running it on the swapped inputs, as done here, agrees with git more often.
fn diff_hunks<T: Eq + std::hash::Hash>(old: &[T], new: &[T], deadline: Option<Instant>) -> Vec<Hunk> {
    let mut flags = ChangeFlags {
        old: vec![false; new.len() + 2],
        new: vec![false; old.len() + 2],
    };
    let Ok(()) = similar::algorithms::myers::diff_deadline(&mut flags, new, 0..new.len(), old, 0..old.len(), deadline);
    let mut old_side = Side {
        recs: old,
        chg: flags.new,
    };
    let mut new_side = Side {
        recs: new,
        chg: flags.old,
    };
    compact(&mut old_side, &new_side);
    compact(&mut new_side, &old_side);

    let (n, m) = (old.len(), new.len());
    let mut hunks = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if old_side.is_changed(i) || new_side.is_changed(j) {
            let (i0, j0) = (i, j);
            while old_side.is_changed(i) {
                i += 1;
            }
            while new_side.is_changed(j) {
                j += 1;
            }
            hunks.push(Hunk {
                base: i0..i,
                side: j0..j,
            });
        } else {
            i += 1;
            j += 1;
        }
    }
    hunks
}

/// Records which elements a diff deletes from the old side and inserts from the new side. Both vectors have a
/// `false` sentinel at each end: element `i` is at index `i + 1`.
struct ChangeFlags {
    old: Vec<bool>,
    new: Vec<bool>,
}

impl DiffHook for ChangeFlags {
    type Error = Infallible;

    fn delete(&mut self, old_index: usize, old_len: usize, _new_index: usize) -> Result<(), Infallible> {
        self.old[old_index + 1..old_index + 1 + old_len].fill(true);
        Ok(())
    }

    fn insert(&mut self, _old_index: usize, new_index: usize, new_len: usize) -> Result<(), Infallible> {
        self.new[new_index + 1..new_index + 1 + new_len].fill(true);
        Ok(())
    }
}

/// One side of a diff: its elements and which of them are changed (`chg[i + 1]` for element `i`, with a `false`
/// sentinel at both ends).
struct Side<'a, T> {
    recs: &'a [T],
    chg: Vec<bool>,
}

/// A maximal run `start..end` of changed elements of one side; empty between two adjacent unchanged elements. The
/// k-th group of one side corresponds to the k-th group of the other side.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

impl<T: Eq> Side<'_, T> {
    fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether element `i` is changed; `false` past the end.
    fn is_changed(&self, i: usize) -> bool {
        self.chg.get(i + 1).copied().unwrap_or(false)
    }

    fn set_changed(&mut self, i: usize, changed: bool) {
        self.chg[i + 1] = changed;
    }

    fn first_group(&self) -> Group {
        let mut end = 0;
        while self.is_changed(end) {
            end += 1;
        }
        Group { start: 0, end }
    }

    /// Moves `g` to the next (possibly empty) group; `false` when `g` is the last one.
    fn next_group(&self, g: &mut Group) -> bool {
        if g.end >= self.len() {
            return false;
        }
        g.start = g.end + 1;
        g.end = g.start;
        while self.is_changed(g.end) {
            g.end += 1;
        }
        true
    }

    /// Moves `g` to the previous (possibly empty) group; `false` when `g` is the first one.
    fn previous_group(&self, g: &mut Group) -> bool {
        if g.start == 0 {
            return false;
        }
        g.end = g.start - 1;
        g.start = g.end;
        while g.start > 0 && self.is_changed(g.start - 1) {
            g.start -= 1;
        }
        true
    }

    /// Slides the non-empty group `g` one element down if the element after it equals its first element, merging
    /// it with a following group it then touches.
    fn slide_down(&mut self, g: &mut Group) -> bool {
        if g.end < self.len() && self.recs[g.start] == self.recs[g.end] {
            self.set_changed(g.start, false);
            self.set_changed(g.end, true);
            g.start += 1;
            g.end += 1;
            while self.is_changed(g.end) {
                g.end += 1;
            }
            true
        } else {
            false
        }
    }

    /// Slides the non-empty group `g` one element up if the element before it equals its last element, merging it
    /// with a preceding group it then touches.
    fn slide_up(&mut self, g: &mut Group) -> bool {
        if g.start > 0 && self.recs[g.start - 1] == self.recs[g.end - 1] {
            g.start -= 1;
            g.end -= 1;
            self.set_changed(g.start, true);
            self.set_changed(g.end, false);
            while g.start > 0 && self.is_changed(g.start - 1) {
                g.start -= 1;
            }
            true
        } else {
            false
        }
    }
}

/// Port of xdiff's `xdl_change_compact` (without the indent heuristic, which `git merge-file` and GNU diff do not
/// use): each group of changes in `side` is slid as far down as it can go, merging with groups it meets, and then
/// back up to the last position where it lines up with a group of changes in `other` (making a replacement rather
/// than a separate deletion and insertion).
fn compact<T: Eq>(side: &mut Side<'_, T>, other: &Side<'_, T>) {
    let mut g = side.first_group();
    let mut go = other.first_group();
    loop {
        if g.end != g.start {
            let mut earliest_end;
            let mut end_matching_other;
            loop {
                let size = g.end - g.start;
                end_matching_other = None;
                while side.slide_up(&mut g) {
                    if !other.previous_group(&mut go) {
                        return; // Unreachable: the two sides' groups always correspond.
                    }
                }
                earliest_end = g.end;
                if go.end > go.start {
                    end_matching_other = Some(g.end);
                }
                while side.slide_down(&mut g) {
                    if !other.next_group(&mut go) {
                        return; // Unreachable, as above.
                    }
                    if go.end > go.start {
                        end_matching_other = Some(g.end);
                    }
                }
                if size == g.end - g.start {
                    break;
                }
            }
            if g.end != earliest_end && end_matching_other.is_some() {
                while go.end == go.start {
                    if !side.slide_up(&mut g) || !other.previous_group(&mut go) {
                        return; // Unreachable, as above.
                    }
                }
            }
        }
        if !side.next_group(&mut g) || !other.next_group(&mut go) {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Unified diff
// ---------------------------------------------------------------------------------------------------------------

/// A standard unified diff of `old` against `new` (`--- old_label`, `+++ new_label`, `@@ -a,b +c,d @@` hunks with
/// `context` lines of context, ` `/`-`/`+` lines and `\ No newline at end of file` after a line that lacks one), as
/// `diff -u` / `git diff` print it, minus timestamps. Empty when the texts are equal.
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str, context: usize) -> String {
    if old == new {
        return String::new();
    }
    let old_lines = split_lines(old);
    let new_lines = split_lines(new);
    let mut interner = Interner::default();
    let old_ids = interner.intern(&old_lines);
    let new_ids = interner.intern(&new_lines);
    let hunks = diff_hunks(&old_ids, &new_ids, deadline_after(LINE_DIFF_TIMEOUT));

    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    let mut rest = &hunks[..];
    while let Some(first) = rest.first() {
        // Changes whose context would touch or overlap share one hunk.
        let mut count = 1;
        while rest
            .get(count)
            .is_some_and(|next| next.base.start - rest[count - 1].base.end <= context.saturating_mul(2))
        {
            count += 1;
        }
        let (group, tail) = rest.split_at(count);
        rest = tail;
        let last = &group[count - 1];
        let before = context.min(first.base.start);
        let after = context.min(old_lines.len() - last.base.end);
        let old_range = first.base.start - before..last.base.end + after;
        let new_range = first.side.start - before..last.side.end + after;
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            hunk_range(&old_range),
            hunk_range(&new_range)
        ));
        let mut pos = old_range.start;
        for hunk in group {
            push_diff_lines(&mut out, ' ', &old_lines[pos..hunk.base.start]);
            push_diff_lines(&mut out, '-', &old_lines[hunk.base.clone()]);
            push_diff_lines(&mut out, '+', &new_lines[hunk.side.clone()]);
            pos = hunk.base.end;
        }
        push_diff_lines(&mut out, ' ', &old_lines[pos..old_range.end]);
    }
    out
}

/// `start,len` of a hunk side as unified diffs write it: 1-based, `,len` omitted when it is 1, and an empty range
/// named by the line before it (`0,0` at the top).
fn hunk_range(range: &Range<usize>) -> String {
    match range.len() {
        0 => format!("{},0", range.start),
        1 => format!("{}", range.start + 1),
        len => format!("{},{len}", range.start + 1),
    }
}

fn push_diff_lines(out: &mut String, prefix: char, lines: &[&str]) {
    for line in lines {
        out.push(prefix);
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Three-way merge
// ---------------------------------------------------------------------------------------------------------------

/// One region that both sides changed differently.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Conflict {
    /// 0-based index of this conflict among all conflicts.
    pub index: usize,
    /// 1-based line in `base` where the conflicting region starts (the region may be empty: then it is the line
    /// the conflicting insertions go before, or `base`'s line count + 1 at its end).
    pub base_start: usize,
    /// The region's text in the common ancestor (whole lines, with their line endings; may be empty).
    pub base: String,
    /// The region's text in our version.
    pub ours: String,
    /// The region's text in their version.
    pub theirs: String,
}

/// The result of [`merge3`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Every change merged; the merged text.
    Clean(String),
    /// Some regions were changed differently on both sides (at least one conflict).
    Conflicts(Vec<Conflict>),
}

/// How to resolve one [`Conflict`]. JSON: `{"take": "ours"}`, `{"take": "theirs"}`, `{"take": "base"}` or
/// `{"take": "text", "text": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "take")]
pub enum Resolution {
    /// Keep our version of the region.
    Ours,
    /// Keep their version of the region.
    Theirs,
    /// Keep the common ancestor's version of the region (drop both changes).
    Base,
    /// Replace the region with this text, verbatim (include the final `\n` unless the region ends the text).
    Text { text: String },
}

enum Segment {
    Clean(String),
    Conflict(Conflict),
}

/// Three-way, line-based merge of `ours` and `theirs`, both derived from `base`, with diff3 semantics.
///
/// Regions changed only on one side take that side; regions changed identically on both take the change once;
/// regions changed differently on both (including different insertions at the same place) are conflicts.
///
/// As in `git merge-file` (and GNU `diff3`), changes on the two sides that *touch* — a change ending on the line
/// where the other side's change starts, or an insertion directly before/after a line the other side changed — are
/// one overlapping region, hence a conflict when they differ; changes separated by at least one line that neither
/// side changed merge cleanly. Known differences from git: a region whose final text is the same on both sides
/// merges cleanly even if the two diffs split it differently (git compares hunk by hunk); git's "zealous" conflict
/// trimming is not applied (git skips it in diff3 style too, and every conflict here reports its base text); and in
/// repetitive text where several equally short diffs exist, the chosen alignment (hence, rarely, the extent of a
/// conflict or whether two changes touch) can differ from xdiff's.
pub fn merge3(base: &str, ours: &str, theirs: &str) -> MergeOutcome {
    let segments = merge_segments(base, ours, theirs);
    if segments.iter().any(|s| matches!(s, Segment::Conflict(_))) {
        MergeOutcome::Conflicts(
            segments
                .into_iter()
                .filter_map(|s| match s {
                    Segment::Conflict(c) => Some(c),
                    Segment::Clean(_) => None,
                })
                .collect(),
        )
    } else {
        MergeOutcome::Clean(
            segments
                .into_iter()
                .map(|s| match s {
                    Segment::Clean(text) => text,
                    Segment::Conflict(_) => String::new(),
                })
                .collect(),
        )
    }
}

/// Merges and resolves each conflict (in order) with the given resolution. Err(message) if the count of resolutions
/// does not match the number of conflicts.
pub fn merge3_resolved(base: &str, ours: &str, theirs: &str, resolutions: &[Resolution]) -> Result<String, String> {
    let segments = merge_segments(base, ours, theirs);
    let conflicts = segments.iter().filter(|s| matches!(s, Segment::Conflict(_))).count();
    if conflicts != resolutions.len() {
        return Err(format!(
            "the merge has {conflicts} conflict(s) but {} resolution(s) were given",
            resolutions.len()
        ));
    }
    let mut resolutions = resolutions.iter();
    let mut out = String::new();
    for segment in &segments {
        match segment {
            Segment::Clean(text) => out.push_str(text),
            Segment::Conflict(c) => match resolutions.next() {
                Some(Resolution::Ours) => out.push_str(&c.ours),
                Some(Resolution::Theirs) => out.push_str(&c.theirs),
                Some(Resolution::Base) => out.push_str(&c.base),
                Some(Resolution::Text { text }) => out.push_str(text),
                None => return Err("internal error: ran out of resolutions".to_string()),
            },
        }
    }
    Ok(out)
}

/// The merge as alternating runs of merged text and conflicts, in document order.
fn merge_segments(base: &str, ours: &str, theirs: &str) -> Vec<Segment> {
    // Trivial cases (the general algorithm gives the same result, only slower).
    if ours == theirs || base == theirs {
        return vec![Segment::Clean(ours.to_string())];
    }
    if base == ours {
        return vec![Segment::Clean(theirs.to_string())];
    }

    let b = split_lines(base);
    let o = split_lines(ours);
    let t = split_lines(theirs);
    let mut interner = Interner::default();
    let bi = interner.intern(&b);
    let oi = interner.intern(&o);
    let ti = interner.intern(&t);
    let ours_hunks = diff_hunks(&bi, &oi, deadline_after(LINE_DIFF_TIMEOUT));
    let theirs_hunks = diff_hunks(&bi, &ti, deadline_after(LINE_DIFF_TIMEOUT));

    let mut segments = Vec::new();
    let mut clean = String::new();
    let mut conflicts = 0;
    // Next unconsumed hunk on each side, and the first base line not yet emitted.
    let (mut i, mut j, mut pos) = (0, 0, 0);
    loop {
        let start = match (ours_hunks.get(i), theirs_hunks.get(j)) {
            (None, None) => break,
            (Some(h), None) | (None, Some(h)) => h.base.start,
            (Some(x), Some(y)) => x.base.start.min(y.base.start),
        };
        // Grow the region [start, end) of base over every hunk (of either side) that overlaps or touches it.
        let (i0, j0) = (i, j);
        let mut end = start;
        loop {
            let before = (i, j);
            while let Some(h) = ours_hunks.get(i).filter(|h| h.base.start <= end) {
                end = end.max(h.base.end);
                i += 1;
            }
            while let Some(h) = theirs_hunks.get(j).filter(|h| h.base.start <= end) {
                end = end.max(h.base.end);
                j += 1;
            }
            if (i, j) == before {
                break;
            }
        }

        push_lines(&mut clean, &b[pos..start]);
        let base_ids = &bi[start..end];
        let (ours_lines, ours_ids) = match side_range(&ours_hunks[i0..i], start, end) {
            Some(r) => (&o[r.clone()], &oi[r]),
            None => (&b[start..end], base_ids),
        };
        let (theirs_lines, theirs_ids) = match side_range(&theirs_hunks[j0..j], start, end) {
            Some(r) => (&t[r.clone()], &ti[r]),
            None => (&b[start..end], base_ids),
        };
        if ours_ids == base_ids {
            push_lines(&mut clean, theirs_lines);
        } else if theirs_ids == base_ids || ours_ids == theirs_ids {
            push_lines(&mut clean, ours_lines);
        } else {
            if !clean.is_empty() {
                segments.push(Segment::Clean(std::mem::take(&mut clean)));
            }
            segments.push(Segment::Conflict(Conflict {
                index: conflicts,
                base_start: start + 1,
                base: b[start..end].concat(),
                ours: ours_lines.concat(),
                theirs: theirs_lines.concat(),
            }));
            conflicts += 1;
        }
        pos = end;
    }
    push_lines(&mut clean, &b[pos..]);
    if !clean.is_empty() {
        segments.push(Segment::Clean(clean));
    }
    segments
}

/// The range of one side's lines that corresponds to base lines `start..end`, given that side's hunks inside that
/// region (`None` when there are none, i.e. the side equals base there). Base lines of the region outside the hunks
/// are unchanged on that side, so the range extends from the first hunk back to `start` and from the last to `end`.
fn side_range(hunks: &[Hunk], start: usize, end: usize) -> Option<Range<usize>> {
    let (first, last) = (hunks.first()?, hunks.last()?);
    Some(first.side.start - (first.base.start - start)..last.side.end + (end - last.base.end))
}

fn push_lines(out: &mut String, lines: &[&str]) {
    for line in lines {
        out.push_str(line);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Minimal text edits
// ---------------------------------------------------------------------------------------------------------------

/// Replace `delete` units starting at `start` with `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub start: usize,
    pub delete: usize,
    pub insert: String,
}

/// The unit that [`TextEdit`] positions and lengths count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// UTF-8 bytes (Rust `String` indices; yrs `OffsetKind::Bytes`).
    Bytes,
    /// UTF-16 code units (JavaScript string indices; yrs `OffsetKind::Utf16`). A character outside the BMP counts 2.
    Utf16,
    /// Unicode scalar values (Rust `char`s).
    Chars,
}

impl Unit {
    /// Length of `text` in this unit.
    pub fn count(self, text: &str) -> usize {
        match self {
            Unit::Bytes => text.len(),
            Unit::Utf16 => text.chars().map(char::len_utf16).sum(),
            Unit::Chars => text.chars().count(),
        }
    }
}

/// Size limits and time budget of [`text_edits`].
#[derive(Debug, Clone, Copy)]
struct EditLimits {
    /// Combined byte size of the changed middle (after trimming the common prefix and suffix) up to which a plain
    /// character diff is run; above it the middle is line-diffed first.
    char_diff_max: usize,
    /// Combined byte size of one changed line hunk up to which it is refined by a character diff; larger hunks are
    /// replaced whole.
    hunk_char_diff_max: usize,
    /// Budget for the whole computation. Past it, diffs degrade to coarser (still correct) edits.
    timeout: Duration,
}

const EDIT_LIMITS: EditLimits = EditLimits {
    char_diff_max: 64 * 1024,
    hunk_char_diff_max: 256 * 1024,
    timeout: Duration::from_secs(1),
};

/// Edits that turn `old` into `new`, with `start`/`delete` counted in the units `unit` says, returned in DESCENDING
/// order of `start` so that applying them one after another to `old` never shifts a later edit's position.
///
/// The edits come from a character-level Myers diff (after trimming the common prefix and suffix); adjacent
/// deletions and insertions are coalesced into one edit, and consecutive edits are separated by at least one
/// unchanged character. Edits never split a character, so in UTF-16 a surrogate pair is never cut. Large changed
/// regions are line-diffed first and then character-diffed within each changed run of lines; a changed run of
/// lines above 256 KiB, or work past a one-second budget, yields coarser edits (still exactly turning `old` into
/// `new`).
pub fn text_edits(old: &str, new: &str, unit: Unit) -> Vec<TextEdit> {
    text_edits_with(old, new, unit, EDIT_LIMITS)
}

/// An edit in byte ranges of `old` and `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawEdit {
    old: Range<usize>,
    new: Range<usize>,
}

fn text_edits_with(old: &str, new: &str, unit: Unit, limits: EditLimits) -> Vec<TextEdit> {
    if old == new {
        return Vec::new();
    }
    let deadline = deadline_after(limits.timeout);
    let prefix = common_prefix_len(old, new);
    let suffix = common_suffix_len(&old[prefix..], &new[prefix..]);
    let old_mid = &old[prefix..old.len() - suffix];
    let new_mid = &new[prefix..new.len() - suffix];

    let mut raw = Vec::new();
    if old_mid.len() + new_mid.len() <= limits.char_diff_max {
        char_diff(old_mid, new_mid, prefix, prefix, deadline, &mut raw);
    } else {
        let old_lines = split_lines(old_mid);
        let new_lines = split_lines(new_mid);
        let mut interner = Interner::default();
        let old_ids = interner.intern(&old_lines);
        let new_ids = interner.intern(&new_lines);
        let old_offsets = line_offsets(&old_lines, prefix);
        let new_offsets = line_offsets(&new_lines, prefix);
        for hunk in diff_hunks(&old_ids, &new_ids, deadline) {
            let o = old_offsets[hunk.base.start]..old_offsets[hunk.base.end];
            let n = new_offsets[hunk.side.start]..new_offsets[hunk.side.end];
            if o.len() + n.len() <= limits.hunk_char_diff_max {
                char_diff(&old[o.clone()], &new[n.clone()], o.start, n.start, deadline, &mut raw);
            } else {
                push_edit(&mut raw, RawEdit { old: o, new: n });
            }
        }
    }

    let mut edits = Vec::with_capacity(raw.len());
    let (mut byte_pos, mut unit_pos) = (0, 0);
    for edit in raw {
        unit_pos += unit.count(&old[byte_pos..edit.old.start]);
        let delete = unit.count(&old[edit.old.clone()]);
        edits.push(TextEdit {
            start: unit_pos,
            delete,
            insert: new[edit.new].to_string(),
        });
        unit_pos += delete;
        byte_pos = edit.old.end;
    }
    edits.reverse();
    edits
}

/// Byte length of the longest common prefix of whole characters.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// Byte length of the longest common suffix of whole characters.
fn common_suffix_len(a: &str, b: &str) -> usize {
    a.chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum()
}

/// Byte offset (plus `base`) where each line starts, and one past the last line's end.
fn line_offsets(lines: &[&str], base: usize) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(lines.len() + 1);
    let mut pos = base;
    offsets.push(pos);
    for line in lines {
        pos += line.len();
        offsets.push(pos);
    }
    offsets
}

/// Character diff of `old` against `new` (which sit at byte offsets `old_at`/`new_at` of the full texts), appending
/// the changes to `out` in byte ranges of the full texts.
fn char_diff(old: &str, new: &str, old_at: usize, new_at: usize, deadline: Option<Instant>, out: &mut Vec<RawEdit>) {
    if old.is_empty() || new.is_empty() {
        if !(old.is_empty() && new.is_empty()) {
            push_edit(
                out,
                RawEdit {
                    old: old_at..old_at + old.len(),
                    new: new_at..new_at + new.len(),
                },
            );
        }
        return;
    }
    let (old_chars, old_offsets) = chars_with_offsets(old);
    let (new_chars, new_offsets) = chars_with_offsets(new);
    for hunk in diff_hunks(&old_chars, &new_chars, deadline) {
        let (o, n) = (hunk.base, hunk.side);
        push_edit(
            out,
            RawEdit {
                old: old_at + old_offsets[o.start]..old_at + old_offsets[o.end],
                new: new_at + new_offsets[n.start]..new_at + new_offsets[n.end],
            },
        );
    }
}

/// The characters of `s` and the byte offset of each, plus `s.len()` at the end.
fn chars_with_offsets(s: &str) -> (Vec<char>, Vec<usize>) {
    let mut chars = Vec::with_capacity(s.len());
    let mut offsets = Vec::with_capacity(s.len() + 1);
    for (i, c) in s.char_indices() {
        chars.push(c);
        offsets.push(i);
    }
    offsets.push(s.len());
    (chars, offsets)
}

/// Appends `edit`, merging it into the previous edit when the two touch in both texts.
fn push_edit(out: &mut Vec<RawEdit>, edit: RawEdit) {
    if let Some(last) = out.last_mut()
        && last.old.end == edit.old.start
        && last.new.end == edit.new.start
    {
        last.old.end = edit.old.end;
        last.new.end = edit.new.end;
        return;
    }
    out.push(edit);
}

#[cfg(test)]
mod tests {
    use super::*;

    // -----------------------------------------------------------------------------------------------------------
    // Helpers
    // -----------------------------------------------------------------------------------------------------------

    /// SplitMix64: a small deterministic PRNG for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform-ish in `0..n` (`n > 0`).
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const CHARS: &[char] = &[
        'a', 'b', 'c', 'x', ' ', '\n', '\n', '\r', 'é', 'ß', 'ü', '中', '文', '字', '😀', '🎉', '👍', '\u{0301}',
        '\u{200D}',
    ];

    fn random_text(rng: &mut Rng, max_len: usize) -> String {
        let len = rng.below(max_len + 1);
        (0..len).map(|_| *rng.pick(CHARS)).collect()
    }

    /// A random variation of `text`: a few character-level insertions, deletions and replacements.
    fn mutate_chars(rng: &mut Rng, text: &str) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for _ in 0..rng.below(6) {
            match rng.below(3) {
                0 => {
                    let at = rng.below(chars.len() + 1);
                    let run: Vec<char> = (0..1 + rng.below(4)).map(|_| *rng.pick(CHARS)).collect();
                    chars.splice(at..at, run);
                }
                1 if !chars.is_empty() => {
                    let at = rng.below(chars.len());
                    let end = (at + 1 + rng.below(4)).min(chars.len());
                    chars.drain(at..end);
                }
                _ if !chars.is_empty() => {
                    let at = rng.below(chars.len());
                    chars[at] = *rng.pick(CHARS);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    /// Applies `edits` one after another, indexing `old` in `unit`, exactly as a CRDT client would.
    fn apply(old: &str, edits: &[TextEdit], unit: Unit) -> String {
        match unit {
            Unit::Bytes => {
                let mut text = old.to_string();
                for e in edits {
                    assert!(
                        text.is_char_boundary(e.start) && text.is_char_boundary(e.start + e.delete),
                        "{e:?}"
                    );
                    text.replace_range(e.start..e.start + e.delete, &e.insert);
                }
                text
            }
            Unit::Utf16 => {
                let mut text: Vec<u16> = old.encode_utf16().collect();
                for e in edits {
                    text.splice(e.start..e.start + e.delete, e.insert.encode_utf16());
                }
                String::from_utf16(&text).expect("an edit split a surrogate pair")
            }
            Unit::Chars => {
                let mut text: Vec<char> = old.chars().collect();
                for e in edits {
                    text.splice(e.start..e.start + e.delete, e.insert.chars());
                }
                text.into_iter().collect()
            }
        }
    }

    const UNITS: [Unit; 3] = [Unit::Bytes, Unit::Utf16, Unit::Chars];

    /// Checks every promised property of `edits` for `old` -> `new`.
    fn check_edits(old: &str, new: &str, unit: Unit, edits: &[TextEdit]) {
        for e in edits {
            assert!(e.delete > 0 || !e.insert.is_empty(), "no-op edit {e:?}");
            assert!(e.start + e.delete <= unit.count(old), "edit past the end: {e:?}");
        }
        for pair in edits.windows(2) {
            // Strictly descending, not overlapping, and not touching (touching edits are coalesced).
            assert!(
                pair[1].start + pair[1].delete < pair[0].start,
                "order/coalescing: {pair:?}"
            );
        }
        assert_eq!(
            apply(old, edits, unit),
            new,
            "old={old:?} new={new:?} unit={unit:?} edits={edits:?}"
        );
        if old == new {
            assert!(edits.is_empty());
        }
    }

    fn roundtrip(old: &str, new: &str) {
        for unit in UNITS {
            let edits = text_edits(old, new, unit);
            check_edits(old, new, unit, &edits);
        }
    }

    fn edit(start: usize, delete: usize, insert: &str) -> TextEdit {
        TextEdit {
            start,
            delete,
            insert: insert.to_string(),
        }
    }

    fn clean(base: &str, ours: &str, theirs: &str) -> String {
        match merge3(base, ours, theirs) {
            MergeOutcome::Clean(text) => text,
            MergeOutcome::Conflicts(c) => panic!("unexpected conflicts {c:#?}"),
        }
    }

    fn conflicts(base: &str, ours: &str, theirs: &str) -> Vec<Conflict> {
        match merge3(base, ours, theirs) {
            MergeOutcome::Clean(text) => panic!("unexpected clean merge {text:?}"),
            MergeOutcome::Conflicts(c) => c,
        }
    }

    fn conflict(index: usize, base_start: usize, base: &str, ours: &str, theirs: &str) -> Conflict {
        Conflict {
            index,
            base_start,
            base: base.to_string(),
            ours: ours.to_string(),
            theirs: theirs.to_string(),
        }
    }

    fn text(text: &str) -> Resolution {
        Resolution::Text { text: text.to_string() }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Unified diff
    // -----------------------------------------------------------------------------------------------------------

    #[test]
    fn unified_diff_single_change_with_context() {
        let old = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n";
        let new = "one\ntwo\nthree\nFOUR\nfive\nsix\nseven\n";
        assert_eq!(
            unified_diff(old, new, "a/doc.md", "b/doc.md", 2),
            "--- a/doc.md\n+++ b/doc.md\n@@ -2,5 +2,5 @@\n two\n three\n-four\n+FOUR\n five\n six\n"
        );
        assert_eq!(
            unified_diff(old, new, "old", "new", 3),
            "--- old\n+++ new\n@@ -1,7 +1,7 @@\n one\n two\n three\n-four\n+FOUR\n five\n six\n seven\n"
        );
    }

    #[test]
    fn unified_diff_merges_hunks_whose_context_touches() {
        // The changes are 6 lines apart: with 3 lines of context the two hunks touch and become one.
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "ONE\n2\n3\n4\n5\n6\n7\nEIGHT\n";
        let diff = unified_diff(old, new, "o", "n", 3);
        assert_eq!(diff.matches("@@ -").count(), 1, "{diff}");
        assert!(
            diff.starts_with("--- o\n+++ n\n@@ -1,8 +1,8 @@\n-1\n+ONE\n 2\n"),
            "{diff}"
        );
        // With 2 lines of context they stay apart.
        let diff = unified_diff(old, new, "o", "n", 2);
        assert_eq!(
            diff,
            "--- o\n+++ n\n@@ -1,3 +1,3 @@\n-1\n+ONE\n 2\n 3\n@@ -6,3 +6,3 @@\n 6\n 7\n-8\n+EIGHT\n"
        );
    }

    /// Exact diffs of `o` and `n`: (old, new, lines of context, diff).
    #[test]
    fn unified_diff_cases() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, usize, &str)] = &[
            // Equal texts: an empty diff.
            ("", "", 3, ""),
            ("x\ny\n", "x\ny\n", 3, ""),
            ("no newline", "no newline", 0, ""),
            // No context, then one line: the hunks stay apart.
            ("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nTWO\n3\n4\n5\n6\n7\n8\nNINE\n10\n", 0, "--- o\n+++ n\n@@ -2 +2 @@\n-2\n+TWO\n@@ -9 +9 @@\n-9\n+NINE\n"),
            ("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nTWO\n3\n4\n5\n6\n7\n8\nNINE\n10\n", 1, "--- o\n+++ n\n@@ -1,3 +1,3 @@\n 1\n-2\n+TWO\n 3\n@@ -8,3 +8,3 @@\n 8\n-9\n+NINE\n 10\n"),
            // A missing final newline is marked.
            ("a\nb", "a\nc", 3, "--- o\n+++ n\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"),
            // Adding the final newline.
            ("a", "a\n", 3, "--- o\n+++ n\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"),
            // Removing it.
            ("a\n", "a", 3, "--- o\n+++ n\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"),
            // An unchanged last line without a newline, shown as context.
            ("a\nb\nc", "A\nb\nc", 3, "--- o\n+++ n\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n\\ No newline at end of file\n"),
            // From and to an empty text.
            ("", "x\ny\n", 3, "--- o\n+++ n\n@@ -0,0 +1,2 @@\n+x\n+y\n"),
            ("x\n", "", 3, "--- o\n+++ n\n@@ -1 +0,0 @@\n-x\n"),
            ("", "x", 3, "--- o\n+++ n\n@@ -0,0 +1 @@\n+x\n\\ No newline at end of file\n"),
            // Pure insertions and deletions name the line before them.
            ("a\nb\n", "a\nnew\nb\n", 0, "--- o\n+++ n\n@@ -1,0 +2 @@\n+new\n"),
            ("a\nold\nb\n", "a\nb\n", 0, "--- o\n+++ n\n@@ -2 +1,0 @@\n-old\n"),
            ("a\nb\n", "a\nnew\nb\n", 1, "--- o\n+++ n\n@@ -1,2 +1,3 @@\n a\n+new\n b\n"),
            // git (and GNU diff) report the later of two identical lines as the inserted one.
            ("a\nb\nc\n", "a\nb\nb\nc\n", 0, "--- o\n+++ n\n@@ -2,0 +3 @@\n+b\n"),
            ("x\ny\ny\nz\n", "x\ny\nz\n", 0, "--- o\n+++ n\n@@ -3 +2,0 @@\n-y\n"),
            // CRLF and Unicode are kept as they are.
            ("héllo\r\n世界\r\n", "héllo\r\n世界 😀\r\n", 3, "--- o\n+++ n\n@@ -1,2 +1,2 @@\n héllo\r\n-世界\r\n+世界 😀\r\n"),
        ];
        for &(old, new, context, expected) in cases {
            let diff = unified_diff(old, new, "o", "n", context);
            assert_eq!(diff, expected, "{old:?} -> {new:?} with {context} lines of context");
        }
    }

    #[test]
    fn unified_diff_random_texts_rebuild_both_sides() {
        // With unlimited context a diff has one hunk whose body spells out both texts exactly.
        let mut rng = Rng(7);
        let lines = ["a\n", "b\n", "c\n", "中文\n", "😀\n", "\n", "\r\n", "x"];
        for _ in 0..500 {
            let old: String = (0..rng.below(10)).map(|_| *rng.pick(&lines)).collect();
            let new: String = (0..rng.below(10)).map(|_| *rng.pick(&lines)).collect();
            let diff = unified_diff(&old, &new, "o", "n", 1000);
            if old == new {
                assert_eq!(diff, "");
                continue;
            }
            let body = diff.strip_prefix("--- o\n+++ n\n").expect("header");
            assert_eq!(
                body.matches("\n@@ ").count() + usize::from(body.starts_with("@@ ")),
                1,
                "{diff}"
            );
            let (mut rebuilt_old, mut rebuilt_new) = (String::new(), String::new());
            let mut last_tag = "";
            for line in body.split_inclusive('\n').skip(1) {
                if line == "\\ No newline at end of file\n" {
                    // The previous line had no newline of its own: drop the one the diff added after it.
                    if last_tag != "+" {
                        assert_eq!(rebuilt_old.pop(), Some('\n'));
                    }
                    if last_tag != "-" {
                        assert_eq!(rebuilt_new.pop(), Some('\n'));
                    }
                    continue;
                }
                let (tag, content) = line.split_at(1);
                match tag {
                    " " => {
                        rebuilt_old.push_str(content);
                        rebuilt_new.push_str(content);
                    }
                    "-" => rebuilt_old.push_str(content),
                    "+" => rebuilt_new.push_str(content),
                    other => panic!("unexpected line tag {other:?} in {diff}"),
                }
                last_tag = tag;
            }
            assert_eq!(rebuilt_old, old, "{diff}");
            assert_eq!(rebuilt_new, new, "{diff}");
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Three-way merge
    // -----------------------------------------------------------------------------------------------------------

    /// Merges without conflicts: (base, ours, theirs, merged).
    #[test]
    fn merge_clean_cases() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str)] = &[
            // Trivial cases.
            ("", "", "", ""),
            ("a\nb\n", "a\nb\n", "a\nb\n", "a\nb\n"),
            ("a\n", "a\nours\n", "a\n", "a\nours\n"),
            ("a\n", "a\n", "a\ntheirs\n", "a\ntheirs\n"),
            ("a\n", "both\n", "both\n", "both\n"),
            ("a\nb\n", "", "a\nb\n", ""),
            // One-sided changes are taken.
            ("1\n2\n3\n4\n5\n", "1\nTWO\n3\n4\n5\n", "1\n2\n3\n4\n5\n", "1\nTWO\n3\n4\n5\n"),
            ("1\n2\n3\n4\n5\n", "1\n2\n3\n4\n5\n", "1\n2\n3\nFOUR\n5\n", "1\n2\n3\nFOUR\n5\n"),
            ("1\n2\n3\n4\n5\n", "1\n3\n4\n5\n", "1\n2\n3\n4\n5\n", "1\n3\n4\n5\n"),
            // Changes separated by an unchanged line combine.
            ("1\n2\n3\n4\n5\n", "ONE\n2\n3\n4\n5\n", "1\n2\n3\n4\nFIVE\n", "ONE\n2\n3\n4\nFIVE\n"),
            // Exactly one unchanged line between the two changes is enough.
            ("1\n2\n3\n4\n5\n", "1\nTWO\n3\n4\n5\n", "1\n2\n3\nFOUR\n5\n", "1\nTWO\n3\nFOUR\n5\n"),
            // Insertions and deletions on different sides.
            ("1\n2\n3\n4\n5\n", "0\n1\n2\n3\n4\n5\n", "1\n2\n3\n4\n5\n6\n", "0\n1\n2\n3\n4\n5\n6\n"),
            ("1\n2\n3\n4\n5\n", "1\n3\n4\n5\n", "1\n2\n3\n4\n", "1\n3\n4\n"),
            ("1\n2\n3\n4\n5\n", "1\n2\nnew\n3\n4\n5\n", "1\n2\n3\n4\n5\nend\n", "1\n2\nnew\n3\n4\n5\nend\n"),
            // Identical changes are taken once.
            ("1\n2\n3\n", "1\nTWO\n3\n", "1\nTWO\n3\n4\n", "1\nTWO\n3\n4\n"),
            ("1\n2\n3\n", "1\n3\n", "1\n3\nx\n", "1\n3\nx\n"),
            // Identical insertions at the same place.
            ("1\n2\n3\n", "1\nnew\n2\n3\n", "1\nnew\n2\n3\n4\n", "1\nnew\n2\n3\n4\n"),
            ("", "same\n", "same\n", "same\n"),
            // Appending a line to a text without a final newline changes its last line.
            ("a\nx\nb", "a\nx\nb\nc", "A\nx\nb", "A\nx\nb\nc"),
            // One side drops the final newline, the other changes something else.
            ("a\nx\nb\n", "a\nx\nb", "A\nx\nb\n", "A\nx\nb"),
            ("a\nb", "a\nb\n", "a\nb\n", "a\nb\n"),
            // Line endings are kept.
            ("one\r\ntwo\r\nthree\r\nfour\r\n", "ONE\r\ntwo\r\nthree\r\nfour\r\n", "one\r\ntwo\r\nthree\r\nFOUR\r\n", "ONE\r\ntwo\r\nthree\r\nFOUR\r\n"),
            // Unicode.
            ("# 标题\n内容一\n中间\n内容二\n🎉 fin\n", "# 标题 😀\n内容一\n中间\n内容二\n🎉 fin\n", "# 标题\n内容一\n中间\n内容二 ✅\n🎉 fin\n", "# 标题 😀\n内容一\n中间\n内容二 ✅\n🎉 fin\n"),
        ];
        for &(base, ours, theirs, merged) in cases {
            assert_eq!(
                clean(base, ours, theirs),
                merged,
                "base={base:?} ours={ours:?} theirs={theirs:?}"
            );
        }
    }

    /// Conflicting merges: (base, ours, theirs, the conflicts as (index, base_start, base, ours, theirs)).
    #[test]
    fn merge_conflict_cases() {
        type Expected<'a> = &'a [(usize, usize, &'a str, &'a str, &'a str)];
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, Expected)] = &[
            // The same line.
            ("1\n2\n3\n", "1\nours\n3\n", "1\ntheirs\n3\n", &[(0, 2, "2\n", "ours\n", "theirs\n")]),
            // git merge-file (and diff3) treat changes to directly adjacent lines as one overlapping region.
            ("1\n2\n3\n4\n", "1\nTWO\n3\n4\n", "1\n2\nTHREE\n4\n", &[(0, 2, "2\n3\n", "TWO\n3\n", "2\nTHREE\n")]),
            // An insertion right after (or right before) a line the other side changed.
            ("1\n2\n3\n4\n", "1\nTWO\n3\n4\n", "1\n2\nnew\n3\n4\n", &[(0, 2, "2\n", "TWO\n", "2\nnew\n")]),
            ("1\n2\n3\n4\n", "1\nnew\n2\n3\n4\n", "1\nTWO\n3\n4\n", &[(0, 2, "2\n", "new\n2\n", "TWO\n")]),
            // Different insertions at one place.
            ("1\n2\n", "1\nours\n2\n", "1\ntheirs\n2\n", &[(0, 2, "", "ours\n", "theirs\n")]),
            ("1\n2\n", "top\n1\n2\n", "TOP\n1\n2\n", &[(0, 1, "", "top\n", "TOP\n")]),
            ("1\n2\n", "1\n2\nend\n", "1\n2\nEND\n", &[(0, 3, "", "end\n", "END\n")]),
            ("", "ours\n", "theirs\n", &[(0, 1, "", "ours\n", "theirs\n")]),
            // Modify versus delete.
            ("1\n2\n3\n", "1\nTWO\n3\n", "1\n3\n", &[(0, 2, "2\n", "TWO\n", "")]),
            ("1\n2\n3\n", "1\n3\n", "1\nTWO\n3\n", &[(0, 2, "2\n", "", "TWO\n")]),
            // Ours rewrites lines 2-4 in one hunk; theirs changes 2 and 4 separately: one conflict spanning 2-4.
            ("1\n2\n3\n4\n5\n", "1\nX\nY\nZ\n5\n", "1\ntwo\n3\nfour\n5\n", &[(0, 2, "2\n3\n4\n", "X\nY\nZ\n", "two\n3\nfour\n")]),
            // A chain of touching changes alternating between the sides.
            ("1\n2\n3\n4\n5\n", "1\nA\n3\nC\n5\n", "1\n2\nB\n4\nD\n", &[(0, 2, "2\n3\n4\n5\n", "A\n3\nC\n5\n", "2\nB\n4\nD\n")]),
            // Both sides change the unterminated last line.
            ("a\nb", "a\nB", "a\nC", &[(0, 2, "b", "B", "C")]),
            // "b" and "b\n" are different lines.
            ("a\nb", "a\nb\n", "a\nc", &[(0, 2, "b", "b\n", "c")]),
            // A line-ending-only change is a change.
            ("one\r\ntwo\r\nthree\r\nfour\r\n", "one\r\nTWO\r\nthree\r\nfour\r\n", "one\r\ntwo\nthree\r\nfour\r\n", &[(0, 2, "two\r\n", "TWO\r\n", "two\n")]),
            // Unicode.
            ("# 标题\n内容一\n中间\n内容二\n🎉 fin\n", "# 标题 😀\n内容一\n中间\n内容二\n🎉 fin\n", "# 标题 👍\n内容一\n中间\n内容二\n🎉 fin\n", &[(0, 1, "# 标题\n", "# 标题 😀\n", "# 标题 👍\n")]),
        ];
        for &(base, ours, theirs, expected) in cases {
            let expected: Vec<Conflict> = expected
                .iter()
                .map(|&(i, at, b, o, t)| conflict(i, at, b, o, t))
                .collect();
            assert_eq!(
                conflicts(base, ours, theirs),
                expected,
                "base={base:?} ours={ours:?} theirs={theirs:?}"
            );
        }
    }

    #[test]
    fn merge_reports_several_conflicts_in_order() {
        let base = "a\nb\nc\nd\ne\nf\ng\n";
        let ours = "a\nB1\nc\nd\ne\nF1\ng\nh\n";
        let theirs = "A\nB2\nc\nD\ne\nF2\ng\n";
        // `a` and `b` touch, so line 1 (changed by theirs only) joins the first conflict.
        let first = conflict(0, 1, "a\nb\n", "a\nB1\n", "A\nB2\n");
        assert_eq!(
            conflicts(base, ours, theirs),
            vec![first, conflict(1, 6, "f\n", "F1\n", "F2\n")]
        );
        let resolve = |r: &[Resolution]| merge3_resolved(base, ours, theirs, r).unwrap();
        assert_eq!(
            resolve(&[Resolution::Ours, Resolution::Theirs]),
            "a\nB1\nc\nD\ne\nF2\ng\nh\n"
        );
        assert_eq!(
            resolve(&[Resolution::Base, text("f\nextra\n")]),
            "a\nb\nc\nD\ne\nf\nextra\ng\nh\n"
        );
    }

    #[test]
    fn merge_resolves_an_unterminated_last_line() {
        let resolve = |r: Resolution| merge3_resolved("a\nb", "a\nB", "a\nC", &[r]).unwrap();
        assert_eq!(resolve(Resolution::Ours), "a\nB");
        assert_eq!(resolve(Resolution::Base), "a\nb");
    }

    #[test]
    fn unified_diff_with_unbounded_context() {
        let diff = unified_diff("1\n2\n3\n4\n", "1\nTWO\n3\nFOUR\n", "o", "n", usize::MAX);
        assert_eq!(diff, "--- o\n+++ n\n@@ -1,4 +1,4 @@\n 1\n-2\n+TWO\n 3\n-4\n+FOUR\n");
    }

    #[test]
    fn merge_resolved_checks_the_resolution_count() {
        let base = "1\n2\n3\n";
        let (ours, theirs) = ("1\nours\n3\n", "1\ntheirs\n3\n");
        assert!(merge3_resolved(base, ours, theirs, &[]).is_err());
        assert!(merge3_resolved(base, ours, theirs, &[Resolution::Ours, Resolution::Ours]).is_err());
        let err = merge3_resolved(base, ours, theirs, &[]).unwrap_err();
        assert!(err.contains('1') && err.contains('0'), "{err}");
        // A clean merge takes no resolutions.
        assert_eq!(merge3_resolved(base, ours, base, &[]).unwrap(), ours);
        assert!(merge3_resolved(base, ours, base, &[Resolution::Ours]).is_err());
    }

    #[test]
    fn merge_resolved_applies_each_kind_of_resolution() {
        let base = "head\n1\n2\n3\ntail\n";
        let (ours, theirs) = ("head\n1\nours\n3\ntail\n", "HEAD\n1\ntheirs\n3\ntail\n");
        let resolve = |r: Resolution| merge3_resolved(base, ours, theirs, &[r]).unwrap();
        assert_eq!(resolve(Resolution::Ours), "HEAD\n1\nours\n3\ntail\n");
        assert_eq!(resolve(Resolution::Theirs), "HEAD\n1\ntheirs\n3\ntail\n");
        assert_eq!(resolve(Resolution::Base), "HEAD\n1\n2\n3\ntail\n");
        assert_eq!(
            resolve(text("mine 😀\nand theirs\n")),
            "HEAD\n1\nmine 😀\nand theirs\n3\ntail\n"
        );
        assert_eq!(resolve(text("")), "HEAD\n1\n3\ntail\n");
    }

    #[test]
    fn resolution_json_format() {
        let parse = |json: &str| serde_json::from_str::<Resolution>(json);
        assert_eq!(parse(r#"{"take":"ours"}"#).unwrap(), Resolution::Ours);
        assert_eq!(parse(r#"{"take":"theirs"}"#).unwrap(), Resolution::Theirs);
        assert_eq!(parse(r#"{"take":"base"}"#).unwrap(), Resolution::Base);
        assert_eq!(parse(r#"{"take":"text","text":"x\n"}"#).unwrap(), text("x\n"));
        assert!(parse(r#"{"take":"text"}"#).is_err());
        assert!(parse(r#"{"take":"mine"}"#).is_err());
        assert!(parse(r#""ours""#).is_err());
        let list: Vec<Resolution> = serde_json::from_str(r#"[{"take":"ours"},{"take":"text","text":""}]"#).unwrap();
        assert_eq!(list, vec![Resolution::Ours, text("")]);
    }

    #[test]
    fn conflict_json_format() {
        let c = conflict(0, 3, "b\n", "ours\n", "theirs 😀\n");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"index": 0, "base_start": 3, "base": "b\n", "ours": "ours\n", "theirs": "theirs 😀\n"})
        );
        assert_eq!(serde_json::from_value::<Conflict>(json).unwrap(), c);
    }

    #[test]
    fn openapi_schemas_describe_the_json() {
        use utoipa::PartialSchema;
        let conflict = serde_json::to_string(&Conflict::schema()).unwrap();
        for field in ["index", "base_start", "base", "ours", "theirs"] {
            assert!(conflict.contains(&format!("\"{field}\"")), "{conflict}");
        }
        let resolution = serde_json::to_string(&Resolution::schema()).unwrap();
        for word in ["take", "ours", "theirs", "base", "text"] {
            assert!(resolution.contains(&format!("\"{word}\"")), "{resolution}");
        }
    }

    /// Random line-based texts over a tiny vocabulary, so that the two sides' changes often touch and overlap.
    fn random_lines(rng: &mut Rng, max_lines: usize) -> String {
        const LINES: &[&str] = &["a\n", "b\n", "c\n", "\n", "中文\n", "😀\n", "x\r\n"];
        let mut text: String = (0..rng.below(max_lines + 1)).map(|_| *rng.pick(LINES)).collect();
        if rng.below(5) == 0 {
            text.push_str("tail");
        }
        text
    }

    fn mutate_lines(rng: &mut Rng, text: &str) -> String {
        let mut lines: Vec<String> = split_lines(text).into_iter().map(str::to_string).collect();
        for _ in 0..rng.below(4) {
            match rng.below(3) {
                0 => {
                    let at = rng.below(lines.len() + 1);
                    lines.insert(at, format!("new{}\n", rng.below(3)));
                }
                1 if !lines.is_empty() => {
                    lines.remove(rng.below(lines.len()));
                }
                _ if !lines.is_empty() => {
                    let at = rng.below(lines.len());
                    lines[at] = format!("changed{}\n", rng.below(3));
                }
                _ => {}
            }
        }
        lines.concat()
    }

    #[test]
    fn merge_random_properties() {
        let mut rng = Rng(2024);
        for _ in 0..1500 {
            let base = random_lines(&mut rng, 12);
            let ours = mutate_lines(&mut rng, &base);
            let theirs = mutate_lines(&mut rng, &base);

            // One-sided and identical changes always merge cleanly.
            assert_eq!(merge3(&base, &ours, &base), MergeOutcome::Clean(ours.clone()));
            assert_eq!(merge3(&base, &base, &theirs), MergeOutcome::Clean(theirs.clone()));
            assert_eq!(merge3(&base, &ours, &ours), MergeOutcome::Clean(ours.clone()));

            let outcome = merge3(&base, &ours, &theirs);
            // Swapping the sides swaps each conflict's sides and changes nothing else.
            let swapped = match merge3(&base, &theirs, &ours) {
                MergeOutcome::Conflicts(list) => MergeOutcome::Conflicts(
                    list.into_iter()
                        .map(|c| Conflict {
                            ours: c.theirs,
                            theirs: c.ours,
                            ..c
                        })
                        .collect(),
                ),
                clean => clean,
            };
            assert_eq!(outcome, swapped, "base={base:?} ours={ours:?} theirs={theirs:?}");

            match outcome {
                MergeOutcome::Clean(merged) => {
                    assert_eq!(merge3_resolved(&base, &ours, &theirs, &[]).unwrap(), merged);
                }
                MergeOutcome::Conflicts(list) => {
                    let base_lines = split_lines(&base);
                    let mut previous_end = 0;
                    for (k, c) in list.iter().enumerate() {
                        assert_eq!(c.index, k);
                        assert!(c.ours != c.theirs && c.ours != c.base && c.theirs != c.base, "{c:?}");
                        // The base text is the region of base that starts at `base_start`, after the previous one.
                        let start = c.base_start - 1;
                        assert!(start >= previous_end, "{list:?}");
                        let region_len = split_lines(&c.base).len();
                        assert_eq!(base_lines[start..start + region_len].concat(), c.base);
                        previous_end = start + region_len;
                        assert!(ours.contains(&c.ours) && theirs.contains(&c.theirs), "{c:?}");
                    }
                    // Resolutions apply to the conflicts in order: resolving with a placeholder per conflict and
                    // then substituting each conflict's side gives the same text as resolving with that side.
                    let n = list.len();
                    let all = |r: Resolution| vec![r; n];
                    let placeholder = |k: usize| format!("\u{1}{k}\u{2}");
                    let marked: Vec<Resolution> = (0..n).map(|k| text(&placeholder(k))).collect();
                    let rendered = merge3_resolved(&base, &ours, &theirs, &marked).unwrap();
                    let substitute = |side: fn(&Conflict) -> &String| {
                        list.iter().fold(rendered.clone(), |acc, c| {
                            acc.replacen(&placeholder(c.index), side(c), 1)
                        })
                    };
                    for (resolution, side) in [
                        (Resolution::Ours, (|c| &c.ours) as fn(&Conflict) -> &String),
                        (Resolution::Theirs, |c| &c.theirs),
                        (Resolution::Base, |c| &c.base),
                    ] {
                        assert_eq!(
                            merge3_resolved(&base, &ours, &theirs, &all(resolution)).unwrap(),
                            substitute(side)
                        );
                    }
                    assert!(merge3_resolved(&base, &ours, &theirs, &all(Resolution::Ours)[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn merge_random_disjoint_edits_merge_cleanly() {
        // Unique lines make every diff unambiguous; edits separated by untouched lines must merge to exactly the
        // combination of both sides.
        let mut rng = Rng(99);
        for round in 0..400 {
            let n = 1 + rng.below(30);
            let base: Vec<String> = (0..n).map(|i| format!("line {i} 行\n")).collect();
            let (mut ours, mut theirs, mut expected) = (Vec::new(), Vec::new(), Vec::new());
            let mut i = 0;
            let mut last_changed = false;
            while i < n {
                // A change may start only after an untouched line (or at the very top).
                let change = !last_changed && rng.below(3) == 0;
                if !change {
                    for v in [&mut ours, &mut theirs, &mut expected] {
                        v.push(base[i].clone());
                    }
                    i += 1;
                    last_changed = false;
                    continue;
                }
                let len = rng.below(3).min(n - i); // 0 = pure insertion
                let replacement: Vec<String> = (0..rng.below(3)).map(|k| format!("{round}-{i}-{k} 😀\n")).collect();
                if len == 0 && replacement.is_empty() {
                    continue;
                }
                let (changed, untouched) = if rng.below(2) == 0 {
                    (&mut ours, &mut theirs)
                } else {
                    (&mut theirs, &mut ours)
                };
                changed.extend(replacement.iter().cloned());
                untouched.extend(base[i..i + len].iter().cloned());
                expected.extend(replacement);
                i += len;
                last_changed = true;
            }
            let (base, ours, theirs, expected) = (base.concat(), ours.concat(), theirs.concat(), expected.concat());
            assert_eq!(
                clean(&base, &ours, &theirs),
                expected,
                "base={base:?} ours={ours:?} theirs={theirs:?}"
            );
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Text edits
    // -----------------------------------------------------------------------------------------------------------

    #[test]
    fn text_edits_of_equal_texts_are_empty() {
        for unit in UNITS {
            assert_eq!(text_edits("", "", unit), vec![]);
            assert_eq!(text_edits("same 😀", "same 😀", unit), vec![]);
        }
    }

    #[test]
    fn text_edits_from_and_to_empty() {
        assert_eq!(text_edits("", "abc", Unit::Bytes), vec![edit(0, 0, "abc")]);
        assert_eq!(text_edits("abc", "", Unit::Bytes), vec![edit(0, 3, "")]);
        assert_eq!(text_edits("", "😀", Unit::Utf16), vec![edit(0, 0, "😀")]);
        assert_eq!(text_edits("😀中", "", Unit::Utf16), vec![edit(0, 3, "")]);
        assert_eq!(text_edits("😀中", "", Unit::Bytes), vec![edit(0, 7, "")]);
        assert_eq!(text_edits("😀中", "", Unit::Chars), vec![edit(0, 2, "")]);
    }

    #[test]
    fn text_edits_are_minimal_for_simple_changes() {
        assert_eq!(
            text_edits("hello world", "hello brave world", Unit::Chars),
            vec![edit(6, 0, "brave ")]
        );
        assert_eq!(
            text_edits("hello brave world", "hello world", Unit::Chars),
            vec![edit(6, 6, "")]
        );
        // A replacement is one coalesced edit, not a deletion plus an insertion.
        assert_eq!(text_edits("abc", "axc", Unit::Bytes), vec![edit(1, 1, "x")]);
        assert_eq!(
            text_edits("the cat sat", "the dog sat", Unit::Bytes),
            vec![edit(4, 3, "dog")]
        );
        assert_eq!(text_edits("abc", "abcd", Unit::Bytes), vec![edit(3, 0, "d")]);
        assert_eq!(text_edits("abcd", "abc", Unit::Bytes), vec![edit(3, 1, "")]);
    }

    #[test]
    fn text_edits_come_in_descending_order() {
        let edits = text_edits("abcdefgh", "aXcdefgY", Unit::Bytes);
        assert_eq!(edits, vec![edit(7, 1, "Y"), edit(1, 1, "X")]);
        let edits = text_edits("one two three four", "1 two 3 four!", Unit::Chars);
        assert_eq!(edits, vec![edit(18, 0, "!"), edit(8, 5, "3"), edit(0, 3, "1")]);
        check_edits("one two three four", "1 two 3 four!", Unit::Chars, &edits);
    }

    #[test]
    fn text_edits_count_in_the_requested_unit() {
        let old = "héllo 😀 wörld";
        let new = "héllo 🎉 wörld";
        // "héllo " is 7 bytes, 6 UTF-16 units, 6 chars; the emoji is 4 bytes, 2 UTF-16 units, 1 char.
        assert_eq!(text_edits(old, new, Unit::Bytes), vec![edit(7, 4, "🎉")]);
        assert_eq!(text_edits(old, new, Unit::Utf16), vec![edit(6, 2, "🎉")]);
        assert_eq!(text_edits(old, new, Unit::Chars), vec![edit(6, 1, "🎉")]);
        let (old, new) = ("中文字", "中字！");
        assert_eq!(
            text_edits(old, new, Unit::Bytes),
            vec![edit(9, 0, "！"), edit(3, 3, "")]
        );
        assert_eq!(
            text_edits(old, new, Unit::Utf16),
            vec![edit(3, 0, "！"), edit(1, 1, "")]
        );
        assert_eq!(
            text_edits(old, new, Unit::Chars),
            vec![edit(3, 0, "！"), edit(1, 1, "")]
        );
    }

    #[test]
    fn text_edits_never_split_surrogate_pairs() {
        // 😀 is D83D DE00 and 😁 is D83D DE01 in UTF-16: they share a high surrogate, but the edit must replace the
        // whole pair.
        assert_eq!(text_edits("a😀b", "a😁b", Unit::Utf16), vec![edit(1, 2, "😁")]);
        assert_eq!(text_edits("😀😀", "😀🎉😀", Unit::Utf16), vec![edit(2, 0, "🎉")]);
        assert_eq!(text_edits("😀😀", "😀🎉😀", Unit::Bytes), vec![edit(4, 0, "🎉")]);
        // A ZWJ sequence and combining marks are edited per char, which is still valid UTF-16/UTF-8.
        roundtrip("👩‍💻 e\u{0301}", "👩‍🔬 e\u{0300}");
        roundtrip("🇩🇪", "🇫🇷");
    }

    #[test]
    fn text_edits_unit_count() {
        assert_eq!(Unit::Bytes.count("a😀中"), 8);
        assert_eq!(Unit::Utf16.count("a😀中"), 4);
        assert_eq!(Unit::Chars.count("a😀中"), 3);
        assert_eq!(Unit::Utf16.count(""), 0);
    }

    #[test]
    fn text_edits_roundtrip_fixed_cases() {
        let cases = [
            ("", ""),
            ("", "x"),
            ("x", ""),
            ("a", "b"),
            ("aaaa", "aa"),
            ("aa", "aaaa"),
            ("abab", "baba"),
            ("line1\nline2\n", "line1\r\nline2\r\n"),
            ("line1\r\nline2\r\n", "line1\nline2\n"),
            ("no newline", "no newline\n"),
            ("日本語のテキスト", "日本のテキスト文"),
            ("😀😁😂🤣", "🤣😂😁😀"),
            ("mixed é 中 😀 text", "text 😀 中 é mixed"),
            ("\u{FEFF}bom", "bom"),
            ("\0nul", "nul\0"),
        ];
        for (old, new) in cases {
            roundtrip(old, new);
            roundtrip(new, old);
        }
    }

    #[test]
    fn text_edits_on_a_large_document_stay_small() {
        // Big enough to take the line-diff path for the changed middle (changes near both ends defeat the
        // prefix/suffix trimming).
        let old: String = (0..6000).map(|i| format!("line {i}: lorem ipsum 中文 😀\n")).collect();
        assert!(old.len() > 2 * EDIT_LIMITS.char_diff_max);
        let new = old
            .replacen("line 1:", "LINE 1:", 1)
            .replacen("line 3000: lorem", "line 3000: LOREM", 1)
            + "appended 🎉\n";
        for unit in UNITS {
            let edits = text_edits(&old, &new, unit);
            check_edits(&old, &new, unit, &edits);
            let inserted: usize = edits.iter().map(|e| e.insert.len()).sum();
            assert!(edits.len() <= 6 && inserted < 40, "{edits:?}");
        }
    }

    #[test]
    fn text_edits_fallbacks_stay_correct() {
        let mut rng = Rng(5);
        let limits = [
            // Always line-diff first, then char-diff every changed hunk.
            EditLimits {
                char_diff_max: 0,
                hunk_char_diff_max: usize::MAX,
                timeout: Duration::from_secs(60),
            },
            // Line diff only: changed hunks are replaced whole.
            EditLimits {
                char_diff_max: 0,
                hunk_char_diff_max: 0,
                timeout: Duration::from_secs(60),
            },
            // Out of time from the start: the diffs degrade to coarse edits.
            EditLimits {
                char_diff_max: usize::MAX,
                hunk_char_diff_max: usize::MAX,
                timeout: Duration::ZERO,
            },
            EditLimits {
                char_diff_max: 0,
                hunk_char_diff_max: usize::MAX,
                timeout: Duration::ZERO,
            },
        ];
        for _ in 0..300 {
            let old = random_text(&mut rng, 60);
            let new = if rng.below(4) == 0 {
                random_text(&mut rng, 60)
            } else {
                mutate_chars(&mut rng, &old)
            };
            for limit in limits {
                for unit in UNITS {
                    let edits = text_edits_with(&old, &new, unit, limit);
                    check_edits(&old, &new, unit, &edits);
                }
            }
        }
    }

    #[test]
    fn text_edits_random_roundtrip() {
        let mut rng = Rng(0xC0FFEE);
        for _ in 0..2000 {
            let old = random_text(&mut rng, 40);
            let new = match rng.below(5) {
                0 => random_text(&mut rng, 40),
                _ => mutate_chars(&mut rng, &old),
            };
            roundtrip(&old, &new);
        }
    }

    #[test]
    fn text_edits_random_edits_cost_no_more_than_the_change() {
        // One contiguous change in random text yields edits that delete and insert no more than that change.
        let mut rng = Rng(31337);
        for _ in 0..500 {
            let old: Vec<char> = random_text(&mut rng, 30).chars().collect();
            let at = rng.below(old.len() + 1);
            let del = rng.below(old.len() - at + 1).min(3);
            let ins: String = (0..rng.below(4)).map(|_| *rng.pick(CHARS)).collect();
            let mut new = old.clone();
            new.splice(at..at + del, ins.chars());
            let (old, new): (String, String) = (old.into_iter().collect(), new.into_iter().collect());
            let edits = text_edits(&old, &new, Unit::Chars);
            check_edits(&old, &new, Unit::Chars, &edits);
            // Myers minimises the number of deleted plus inserted chars.
            let cost: usize = edits.iter().map(|e| e.delete + e.insert.chars().count()).sum();
            assert!(cost <= del + ins.chars().count(), "{old:?} -> {new:?}: {edits:?}");
        }
    }
}
