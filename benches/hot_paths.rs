//! Micro-benchmarks of the hot paths (`cargo bench`): WebSocket frame encode/decode,
//! fan-out of one event to N local subscribers (serialize once, share the bytes), applying
//! a Yjs update, the event-log insert, and what a statement inside a commit costs raw
//! against prepared once (those need the local Postgres; skipped with a notice when it is
//! not reachable). Results and their reading: docs/PERFORMANCE.md.

use bedda_collab::artifacts::store;
use bedda_collab::events::{self, Event, SharedEvent};
use bedda_collab::transport::{Outbound, wire_size};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use uuid::Uuid;
use yrs::{Doc, Text, Transact};

fn sample_event() -> Event {
    let message = serde_json::json!({
        "id": Uuid::new_v4(), "session_id": Uuid::new_v4(), "seq": 4711, "author_id": Uuid::new_v4(),
        "role": "user", "body": "Can we ship the collaboration beta on Thursday? The review is done.",
        "created_at": chrono::Utc::now(), "edited_at": null, "deleted_at": null, "model": null, "status": "complete",
    });
    Event {
        topic: format!("session:{}", Uuid::new_v4()),
        seq: 4711,
        kind: "message.created".into(),
        data: serde_json::json!({ "message": message }),
        actor_id: Some(Uuid::new_v4()),
        created_at: chrono::Utc::now(),
    }
}

fn frames(c: &mut Criterion) {
    let event = sample_event();
    c.bench_function("frame/encode event", |b| b.iter(|| SharedEvent::new(black_box(&event))));
    let incoming = r#"{"type":"send_message","ref":"c-17","topic":"session:6f1c2d1e-7a0b-4c1e-9d55-0b7f1e2a3c4d","body":"Can we ship the collaboration beta on Thursday?"}"#;
    c.bench_function("frame/decode client frame", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(incoming)).unwrap())
    });
}

fn fan_out(c: &mut Criterion) {
    let event = sample_event();
    let mut group = c.benchmark_group("fan-out");
    for n in [10usize, 100, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        let outbound: Vec<_> = (0..n).map(|_| Outbound::new(usize::MAX)).collect();
        // What the server does: serialize once, hand every subscriber the same bytes
        // (reserving room in its outbound budget).
        group.bench_with_input(BenchmarkId::new("serialize once", n), &n, |b, _| {
            b.iter(|| {
                let shared = SharedEvent::new(&event);
                let mut queued = Vec::with_capacity(n);
                for o in &outbound {
                    let _ = o.reserve(wire_size(shared.frame.len()));
                    queued.push(shared.frame.clone());
                }
                for o in &outbound {
                    o.release(wire_size(shared.frame.len()));
                }
                queued
            })
        });
        // The naive alternative, for comparison: serialize per subscriber.
        group.bench_with_input(BenchmarkId::new("serialize per subscriber", n), &n, |b, _| {
            b.iter(|| {
                (0..n)
                    .map(|_| SharedEvent::new(&event).frame.clone())
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

fn yjs(c: &mut Criterion) {
    // A 10,000-character document and one keystroke-sized update from another client.
    let doc = Doc::new();
    let text = doc.get_or_insert_text(store::TEXT);
    {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &"lorem ipsum dolor sit amet ".repeat(370));
    }
    let state = store::state_of(&doc);
    let remote = Doc::new();
    store::apply(&remote, &state).unwrap();
    let remote_text = remote.get_or_insert_text(store::TEXT);
    let update = {
        let mut txn = remote.transact_mut();
        remote_text.insert(&mut txn, 5000, "x");
        txn.encode_update_v1()
    };
    c.bench_function("yjs/apply keystroke update to 10k-char doc", |b| {
        b.iter_batched(
            || {
                let d = Doc::new();
                store::apply(&d, &state).unwrap();
                d
            },
            |d| store::apply(&d, black_box(&update)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("yjs/encode full state of 10k-char doc", |b| {
        b.iter(|| store::state_of(black_box(&doc)))
    });
}

fn event_log(c: &mut Criterion) {
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/bedda_collab_bench".to_owned());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(async {
        bedda_collab::db::ensure_database(&url).await?;
        bedda_collab::db::run_migrations(&url).await?;
        bedda_collab::db::pool(&url, 4, std::time::Duration::from_secs(5))
    });
    let pool = match pool {
        Ok(pool) => pool,
        Err(err) => {
            println!("notice: skipping the event-log benchmark, Postgres is not reachable ({err:#})");
            return;
        }
    };
    let topic = format!("session:{}", Uuid::new_v4());
    let event = sample_event();
    c.bench_function("event log/insert one event (own transaction, fsync)", |b| {
        b.to_async(&rt).iter(|| {
            let (pool, topic, data) = (pool.clone(), topic.clone(), event.data.clone());
            async move {
                use diesel_async::AsyncConnection;
                let mut conn = pool.get().await.unwrap();
                conn.transaction::<_, bedda_collab::error::AppError, _>(async |conn| {
                    async move {
                        let seq = events::reserve(conn, &topic, 1).await?;
                        events::insert(conn, &topic, seq, "message.created", data, None).await
                    }
                    .await
                })
                .await
                .unwrap()
            }
        })
    });
    c.bench_function("event log/insert 32 events in one transaction, one statement", |b| {
        b.to_async(&rt).iter(|| {
            let (pool, topic, data) = (pool.clone(), topic.clone(), event.data.clone());
            async move {
                use diesel_async::AsyncConnection;
                let mut conn = pool.get().await.unwrap();
                conn.transaction::<_, bedda_collab::error::AppError, _>(async |conn| {
                    async move {
                        let first = events::reserve(conn, &topic, 32).await?;
                        let rows = (0..32).map(|_| ("message.created", data.clone(), None)).collect();
                        events::insert_many(conn, &topic, first, rows).await
                    }
                    .await
                })
                .await
                .unwrap()
            }
        })
    });
    c.bench_function(
        "event log/insert 32 events in one transaction, one statement each",
        |b| {
            b.to_async(&rt).iter(|| {
                let (pool, topic, data) = (pool.clone(), topic.clone(), event.data.clone());
                async move {
                    use diesel_async::AsyncConnection;
                    let mut conn = pool.get().await.unwrap();
                    conn.transaction::<_, bedda_collab::error::AppError, _>(async |conn| {
                        async move {
                            let first = events::reserve(conn, &topic, 32).await?;
                            for i in 0..32 {
                                events::insert(conn, &topic, first + i, "message.created", data.clone(), None).await?;
                            }
                            Ok(())
                        }
                        .await
                    })
                    .await
                    .unwrap()
                }
            })
        },
    );
    round_trips(c, &rt, &pool);
}

#[derive(diesel::QueryableByName)]
struct LastSeq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last_seq: i64,
}

/// What one statement inside a commit costs: raw SQL (`diesel::sql_query`, prepared anew on
/// every call: a Parse/Describe round trip, then the execution) against the same statement
/// through the query builder (prepared once per connection, then one round trip). Both on one
/// connection inside an open transaction that is rolled back at the end (the NOTIFYs are
/// never delivered). The raw forms are what the seq reservation and `pg_notify` were before.
fn round_trips(c: &mut Criterion, rt: &tokio::runtime::Runtime, pool: &bedda_collab::db::DbPool) {
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;
    use std::time::Instant;
    let topic = format!("session:{}", Uuid::new_v4());
    let mut conn = rt.block_on(pool.get()).unwrap();
    rt.block_on(diesel::sql_query("BEGIN").execute(&mut *conn)).unwrap();
    // A topic per call: updating one row over and over in one transaction would lengthen its
    // version chain and make whichever benchmark runs later look slower.
    let mut n = 0u64;
    let mut group = c.benchmark_group("statement in a commit");
    group.bench_function("seq reservation, raw SQL (before)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    let row: LastSeq = diesel::sql_query(
                        "INSERT INTO topics (topic, last_seq) VALUES ($1, $2) \
                         ON CONFLICT (topic) DO UPDATE SET last_seq = topics.last_seq + EXCLUDED.last_seq \
                         RETURNING last_seq",
                    )
                    .bind::<Text, _>(format!("{topic}:{n}"))
                    .bind::<BigInt, _>(1)
                    .get_result(&mut *conn)
                    .await
                    .unwrap();
                    black_box(row.last_seq);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("seq reservation, query builder (events::reserve)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    black_box(events::reserve(&mut conn, &format!("{topic}:{n}"), 1).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    let payload = r#"{"node":"00000000-0000-0000-0000-000000000000","topics":["session:x"]}"#;
    group.bench_function("pg_notify, raw SQL (before)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    diesel::sql_query("SELECT pg_notify($1, $2)")
                        .bind::<Text, _>("bench")
                        .bind::<Text, _>(payload)
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("pg_notify, query builder (Bus)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    diesel::select(bedda_collab::cluster::bus::pg_notify("bench", payload))
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    rt.block_on(diesel::sql_query("ROLLBACK").execute(&mut *conn)).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = frames, fan_out, yjs, event_log
}
criterion_main!(benches);
