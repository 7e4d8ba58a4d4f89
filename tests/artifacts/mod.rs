//! Tests of collaborative artifacts: live Yjs editing, versions, branches, merges, and
//! interoperability with the stock npm Yjs clients.

mod interop;
mod versions;
