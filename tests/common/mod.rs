//! Test harness: `spawn_app()` runs the real server on port 0 against its own database,
//! cloned from a migrated template and dropped when the test ends.

#![allow(dead_code)]

pub mod cluster;
pub mod openai;
pub mod ws;
pub mod yclient;

use bedda_collab::app::Application;
use bedda_collab::config::Config;
use bedda_collab::db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The Postgres server tests use (override with `TEST_DATABASE_URL`, any database name).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_for(name: &str) -> String {
    let mut url = url::Url::parse(&server_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A name that changes whenever the migrations change, so a stale template is never used.
fn template_name() -> String {
    let mut entries: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    let mut hash: u64 = 0xcbf29ce484222325;
    for dir in entries {
        for file in ["up.sql", "down.sql"] {
            let text = std::fs::read(dir.join(file)).unwrap_or_default();
            for b in dir.file_name().unwrap().as_encoded_bytes().iter().chain(text.iter()) {
                hash = (hash ^ *b as u64).wrapping_mul(0x100000001b3);
            }
        }
    }
    format!("bc_template_{hash:016x}")
}

/// Creates the migrated template once per migration set; safe across test processes.
async fn ensure_template() -> String {
    let name = template_name();
    let admin = db::admin_client(&server_url())
        .await
        .expect("Postgres must be running for the tests");
    admin.batch_execute("SELECT pg_advisory_lock(72177)").await.unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .unwrap();
        db::run_migrations(&url_for(&building)).await.expect("migrations run");
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .unwrap();
    }
    admin.batch_execute("SELECT pg_advisory_unlock(72177)").await.unwrap();
    name
}

/// A database of its own for one test, dropped (with any connections) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = ensure_template().await;
        let name = format!("bc_test_{}", Uuid::new_v4().simple());
        let admin = db::admin_client(&server_url()).await.unwrap();
        let mut tries = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                // Another test is copying the template at this instant.
                Err(err) if tries < 50 => {
                    tries += 1;
                    tracing_wait(&err).await;
                }
                Err(err) => panic!("creating test database: {err}"),
            }
        }
        Self {
            url: url_for(&name),
            name,
        }
    }

    /// A plain client for asserting on rows.
    pub async fn client(&self) -> tokio_postgres::Client {
        db::admin_client(&self.url).await.unwrap()
    }
}

async fn tracing_wait(_err: &tokio_postgres::Error) {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = db::admin_client(&server_url()).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A client of one server (in-process or a separate node process).
pub struct Api {
    pub base: String,
    pub port: u16,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(port: u16) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            http: reqwest::Client::new(),
        }
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub api: Api,
    pub config: Config,
    /// The server's shared state (to observe what an operator would: running actors).
    pub state: actix_web::web::Data<bedda_collab::state::AppState>,
    handle: actix_web::dev::ServerHandle,
    // Dropped last: the server must stop before its database goes.
    pub db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server; `tweak` adjusts its configuration first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::new().await;
    let mut config = Config::for_database(&db.url);
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.argon2_memory_kib = 4096;
    config.database_pool_size = 8;
    config.smtp_url = None;
    // Tests register many users from 127.0.0.1; the registration limit has its own tests.
    config.register_rate_per_address = 100_000;
    tweak(&mut config);
    let app = Application::build(config.clone()).await.expect("server builds");
    let handle = app.server.handle();
    let state = app.state.clone();
    actix_web::rt::spawn(app.server);
    TestApp {
        api: Api::new(app.port),
        config,
        state,
        handle,
        db,
    }
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    /// The served OpenAPI document.
    pub async fn openapi(&self) -> Value {
        let (status, doc) = self.call(Method::GET, "/api/openapi.json", None, None).await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        doc
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn register(&self, name: &str) -> User {
        let email = format!("{name}-{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
        let (status, body) = self
            .post(
                "/api/auth/register",
                None,
                json!({ "email": email, "password": "correct horse battery", "display_name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        User {
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            email,
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_workspace(&self, owner: &User, name: &str) -> Uuid {
        let (status, body) = self
            .post("/api/workspaces", Some(&owner.token), json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Invites a new user with `role` and has them accept; returns them.
    pub async fn add_member(&self, inviter: &User, workspace: Uuid, name: &str, role: &str) -> User {
        let user = self.register(name).await;
        let (status, inv) = self
            .post(
                &format!("/api/workspaces/{workspace}/invitations"),
                Some(&inviter.token),
                json!({ "email": user.email, "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{inv}");
        let (status, body) = self
            .post(
                "/api/invitations/accept",
                Some(&user.token),
                json!({ "token": inv["token"] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        user
    }
}

impl TestApp {
    /// Number of rows in a table of this test's database.
    pub async fn count(&self, table: &str) -> i64 {
        let client = self.db.client().await;
        client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Asserts an error response: status and code.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "body: {}", response.1);
    assert_eq!(response.1["code"], code, "body: {}", response.1);
    assert!(
        response.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {}",
        response.1
    );
}
