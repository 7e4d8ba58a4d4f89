//! Password hashing under a burst, against a real node process: memory stays bounded and
//! comes back, and a full queue is refused with `Retry-After` instead of growing.

use super::from_address::{Answer, client_from, post};
use crate::common::cluster::Node;
use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
fn memory_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `n` registrations at once, each from an address of its own (so the per-address limit is
/// not what stops them).
async fn burst(node: &Node, n: usize, tag: &str) -> Vec<Answer> {
    let calls = (0..n).map(|i| {
        let client = client_from(node, &format!("127.0.{}.{}", 2 + i / 200, 10 + i % 200));
        let body = json!({
            "email": format!("{tag}{i}-{}@example.com", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            "password": "correct horse battery",
            "display_name": format!("{tag}{i}"),
        });
        async move { post(&client, "/api/auth/register", &body).await }
    });
    futures_util::future::join_all(calls).await
}

#[actix_web::test]
async fn a_burst_of_64_registrations_keeps_memory_bounded_and_gives_it_back() {
    let db = TestDb::new().await;
    // The node runs with Argon2 memory 4096 KiB (tests/common/cluster.rs).
    let node = Node::start(&db, &[]).await;
    let warm = burst(&node, 2, "warm").await;
    assert!(warm.iter().all(|a| a.status == StatusCode::CREATED), "{warm:?}");
    let (baseline, _) = memory_kib(node.pid());

    let answers = burst(&node, 64, "burst").await;
    let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    assert_eq!(created, 64, "the queue takes a burst of 64: {answers:?}");
    let (_, peak) = memory_kib(node.pid());
    // Freed memory goes back when it is freed; give the process a moment all the same.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = memory_kib(node.pid());
    println!(
        "64 concurrent registrations, Argon2 4096 KiB: RSS baseline {} MiB, peak {} MiB (+{} MiB), \
         after {} MiB (+{} MiB)",
        baseline / 1024,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024,
        after / 1024,
        after.saturating_sub(baseline) / 1024,
    );
    // 64 hashes at once would hold 64 × 4 MiB = 256 MiB; a pool of one per core holds its
    // few buffers from the start.
    assert!(
        peak.saturating_sub(baseline) < 64 * 1024,
        "peak RSS grew by {} MiB during the burst",
        peak.saturating_sub(baseline) / 1024
    );
    assert!(
        after.saturating_sub(baseline) < 24 * 1024,
        "RSS stayed {} MiB above the baseline after the burst",
        after.saturating_sub(baseline) / 1024
    );
}

#[actix_web::test]
async fn a_full_hashing_queue_is_refused_with_retry_after_and_stores_nothing() {
    let db = TestDb::new().await;
    let node = Node::start(&db, &["--password-hash-workers", "1", "--password-hash-queue", "2"]).await;
    let answers = burst(&node, 32, "q").await;
    let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    let busy: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(created >= 1, "{answers:?}");
    assert!(!busy.is_empty(), "one worker and a queue of two cannot take 32 at once");
    assert_eq!(created + busy.len(), answers.len(), "{answers:?}");
    for answer in busy {
        assert_error(&answer.pair(), StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
        assert_eq!(answer.retry_after, Some(1), "{answer:?}");
    }
    let client = db.client().await;
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users as usize, created, "a refused registration stores nothing");
}
