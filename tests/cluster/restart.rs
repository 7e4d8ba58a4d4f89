//! A Postgres restart under a node: writes answered while the database is away get
//! `service_unavailable` (retry), never `internal`, and nothing acknowledged is lost. The test
//! runs a Postgres cluster of its own (initdb into a temporary directory, as the `postgres`
//! user), so restarting it disturbs no other test; without root or initdb it skips.

use crate::common::cluster::Node;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway Postgres on a free port.
struct OwnPostgres {
    dir: String,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Option<Self> {
        let dir = format!("/tmp/bedda-pg-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        std::fs::create_dir(&dir).ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let this = Self { dir, port };
        let ok = Command::new("chown")
            .args(["postgres:postgres", &this.dir])
            .status()
            .ok()?
            .success()
            && this.as_postgres(
                "initdb",
                &[
                    "-D",
                    &this.dir,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            && this.pg_ctl(&["start"]);
        ok.then_some(this)
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/{tool}")])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg_ctl(&self, action: &[&str]) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port, self.dir
        );
        let mut args = vec!["-D", &self.dir, "-w", "-m", "fast", "-o", &options];
        args.extend_from_slice(action);
        self.as_postgres("pg_ctl", &args)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/bedda_restart", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.as_postgres("pg_ctl", &["-D", &self.dir, "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_web::test]
async fn writes_during_a_postgres_restart_get_service_unavailable_and_nothing_acked_is_lost() {
    let Some(pg) = OwnPostgres::start() else {
        eprintln!("NOTICE: no Postgres of the test's own (needs root and {BIN}/initdb); restart test skipped");
        return;
    };
    // A lease far longer than the restart: this test is about statements, not leases.
    let node = Node::start_on(
        &pg.url(),
        &["--node-lease-ms", "30000", "--node-heartbeat-ms", "1000"],
        &[],
    )
    .await;
    let owner = node.register("owner").await;
    let ws = node.create_workspace(&owner, "Team").await;
    let (_, topic) = node.create_session(&owner, ws, "workspace").await;
    let mut client = node.ws(&owner).await;
    client.subscribe(&topic, None).await;

    let restart = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut restarting: Option<tokio::task::JoinHandle<bool>> = None;
    let (mut acked, mut refused, mut acked_after) = (Vec::new(), 0, 0);
    for i in 0..400 {
        if i == 10 {
            let (pg_dir, port) = (pg.dir.clone(), pg.port);
            let flag = restart.clone();
            restarting = Some(tokio::task::spawn_blocking(move || {
                let pg = OwnPostgres { dir: pg_dir, port };
                let ok = pg.pg_ctl(&["restart"]);
                std::mem::forget(pg); // the test's own handle stops it at the end
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                ok
            }));
        }
        let body = format!("message {i}");
        let reference = format!("m{i}");
        client
            .send(json!({ "type": "send_message", "ref": reference, "topic": topic, "body": body }))
            .await;
        let answer = client
            .until(|f| (f["type"] == "ack" || f["type"] == "error") && f["ref"] == reference)
            .await
            .pop()
            .unwrap();
        if answer["type"] == "ack" {
            acked.push((answer["seq"].as_i64().unwrap(), body));
            if restart.load(std::sync::atomic::Ordering::SeqCst) {
                acked_after += 1;
            }
        } else {
            assert_eq!(answer["code"], "service_unavailable", "{answer}");
            refused += 1;
        }
        // REST writes too: created, or told to retry.
        let (status, body) = node
            .post(
                &format!("/api/workspaces/{ws}/sessions"),
                Some(&owner.token),
                json!({ "title": format!("s{i}") }),
            )
            .await;
        assert!(status == 201 || status == 503, "{status} {body}");
        if acked_after >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarting.unwrap().await.unwrap(), "Postgres restarted");
    assert!(acked_after >= 10, "writes work again after the restart");
    eprintln!(
        "restart: {} acked, {refused} refused with service_unavailable",
        acked.len()
    );

    // Every acknowledged message is in the log, at its seq.
    let db = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(db.1);
    for (seq, body) in acked {
        let row =
            db.0.query_one(
                "SELECT data->'message'->>'body' FROM events WHERE topic = $1 AND seq = $2",
                &[&topic, &seq],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), body);
    }
}
