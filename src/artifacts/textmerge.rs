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

/// Maps equal lines to equal integers, so diffs compare `u32`s instead of strings.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
}

impl<'a> Interner<'a> {
    fn intern(&mut self, lines: &[&'a str]) -> Vec<u32> {
        lines
            .iter()
            .map(|line| {
                let next = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
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
/// decides what a three-way merge considers overlapping — matches `git merge-file` and `diff -u` as closely as
/// possible.
fn diff_hunks<T: Eq>(old: &[T], new: &[T], deadline: Option<Instant>) -> Vec<Hunk> {
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
            .is_some_and(|next| next.base.start - rest[count - 1].base.end <= 2 * context)
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
    /// 1-based line in `base` where the conflicting region starts (the region may be empty).
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
/// side changed merge cleanly. Differences from git, both never producing a worse result: a region whose final
/// text is the same on both sides merges cleanly even if the two diffs split it differently (git compares hunk by
/// hunk), and git's "zealous" conflict trimming is not applied (git does not apply it in diff3 style either, and
/// every conflict here reports its base text).
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
            (Some(a), Some(b)) => a.base.start.min(b.base.start),
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
