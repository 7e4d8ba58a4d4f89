//! Generated input for the whole REST API, driven by its own OpenAPI document: every
//! operation is called with generated paths, queries, bodies and credentials — valid
//! shapes, wrong types, missing and unknown fields, NUL, huge and odd Unicode strings,
//! random ids, no or bad auth — by a real user who owns a workspace, a session, an
//! artifact and a version, so that paths resolve. Every answer must be below 500, be a
//! status the document declares for that operation, and (for errors) carry the error
//! envelope.
//!
//! Seeded and bounded: `GEN_SEED` (default fixed), `GEN_CASES` per operation and round
//! (default 20), `GEN_ROUNDS` (default 2, each with a fresh fixture); a failure prints
//! the seed and one request per kind of violation to reproduce it.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

/// SplitMix64: small, seedable, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the generated calls can name: a real owner and what they own.
struct Fixture {
    owner: User,
    member: User,
    api_token: String,
    workspace: Uuid,
    session: Uuid,
    artifact: Uuid,
    version: Uuid,
    token_id: Uuid,
    invitation_id: Uuid,
    invitation_token: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let owner = app.register("owner").await;
    let workspace = app.create_workspace(&owner, "Generated").await;
    let member = app.add_member(&owner, workspace, "member", "editor").await;
    let (_, invitation) = app
        .post(
            &format!("/api/workspaces/{workspace}/invitations"),
            Some(&owner.token),
            json!({ "email": format!("pending-{}@example.com", Uuid::new_v4().simple()), "role": "viewer" }),
        )
        .await;
    let (session, _) = app.create_session(&owner, workspace, "workspace").await;
    let (_, participants) = app
        .post(
            &format!("/api/sessions/{session}/participants"),
            Some(&owner.token),
            json!({ "user_id": member.id }),
        )
        .await;
    assert!(participants.is_array(), "{participants}");
    let (_, artifact) = app
        .post(
            &format!("/api/workspaces/{workspace}/artifacts"),
            Some(&owner.token),
            json!({ "title": "Doc", "content": "hello\nworld" }),
        )
        .await;
    let artifact: Uuid = artifact["id"].as_str().expect("artifact created").parse().unwrap();
    let (_, version) = app
        .post(
            &format!("/api/artifacts/{artifact}/versions"),
            Some(&owner.token),
            json!({ "name": "v1" }),
        )
        .await;
    let (_, token) = app
        .post(
            &format!("/api/workspaces/{workspace}/tokens"),
            Some(&owner.token),
            json!({ "name": "generated", "permissions": ["view_sessions", "view_artifacts"] }),
        )
        .await;
    let id = |v: &Value| -> Uuid { v.as_str().unwrap_or_else(|| panic!("an id: {v}")).parse().unwrap() };
    Fixture {
        api_token: token["token"].as_str().expect("token created").to_owned(),
        token_id: id(&token["id"]),
        invitation_id: id(&invitation["id"]),
        invitation_token: invitation["token"].as_str().unwrap().to_owned(),
        version: id(&version["id"]),
        owner,
        member,
        workspace,
        session,
        artifact,
    }
}

/// Percent-encodes everything but unreserved characters (a NUL becomes `%00`).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Gen<'a> {
    rng: Rng,
    doc: &'a Value,
    fx: &'a Fixture,
}

impl Gen<'_> {
    fn strings(&mut self) -> String {
        let fx = self.fx;
        let pool: Vec<String> = vec![
            String::new(),
            " ".into(),
            "x".into(),
            "Team plan".into(),
            "a".repeat(101),
            "a".repeat(201),
            "é".repeat(2001),
            "b".repeat(20_000),
            "\u{0}".into(),
            "a\u{0}b".into(),
            "\\u0000".into(),
            "\u{202e}rtl".into(),
            "🙂🙂🙂".into(),
            "\u{FEFF}".into(),
            "e\u{301}\u{301}\u{301}".into(),
            "\u{7}bell".into(),
            "line\nbreak".into(),
            "\u{FFFF}\u{10FFFF}".into(),
            "' OR 1=1 --".into(),
            "current".into(),
            "owner".into(),
            "admin".into(),
            "editor".into(),
            "viewer".into(),
            "guest".into(),
            "workspace".into(),
            "private".into(),
            "read".into(),
            "write".into(),
            "off".into(),
            "mention".into(),
            "view_sessions".into(),
            "manage_users".into(),
            fx.owner.email.clone(),
            fx.member.email.clone(),
            "new@example.com".into(),
            "correct horse battery".into(),
            fx.invitation_token.clone(),
            fx.api_token.clone(),
            fx.version.to_string(),
            fx.workspace.to_string(),
            Uuid::nil().to_string(),
            "bcs_not-a-token".into(),
        ];
        self.rng.pick(&pool).clone()
    }

    /// An id for a field called `name`: mostly the fixture's id of that kind.
    fn uuid(&mut self, name: &str) -> Value {
        let fx = self.fx;
        let named = match name {
            "session_id" => Some(fx.session),
            "user_id" => Some(fx.member.id),
            "version_id" => Some(fx.version),
            _ => None,
        };
        if let Some(id) = named
            && self.rng.chance(60)
        {
            return json!(id.to_string());
        }
        let real = [
            fx.workspace,
            fx.session,
            fx.artifact,
            fx.version,
            fx.member.id,
            fx.owner.id,
            fx.token_id,
            fx.invitation_id,
        ];
        match self.rng.below(10) {
            0..=5 => json!(self.rng.pick(&real).to_string()),
            6 | 7 => json!(self.rng.uuid().to_string()),
            8 => json!(Uuid::nil().to_string()),
            _ => json!(self.strings()),
        }
    }

    fn schema(&self, schema: &Value) -> Value {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            return self.doc["components"]["schemas"][name].clone();
        }
        schema.clone()
    }

    fn wrong_type(&mut self) -> Value {
        let pool = [
            json!(null),
            json!(12345),
            json!(-1),
            json!(true),
            json!([]),
            json!({}),
            json!("str"),
            json!(1.5),
            json!(1e300),
            json!(u64::MAX),
            json!(["a", 1]),
        ];
        self.rng.pick(&pool).clone()
    }

    fn value(&mut self, schema: &Value, depth: usize) -> Value {
        self.field("", schema, depth)
    }

    /// A value for the field `name` (hints at ids) of the given schema.
    fn field(&mut self, name: &str, schema: &Value, depth: usize) -> Value {
        if depth > 4 {
            return json!(null);
        }
        if self.rng.chance(7) {
            return self.wrong_type();
        }
        let schema = self.schema(schema);
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(options) = schema[key].as_array() {
                let options: Vec<Value> = options.clone();
                let choice = self.rng.pick(&options).clone();
                return self.field(name, &choice, depth + 1);
            }
        }
        if let Some(values) = schema["enum"].as_array() {
            if self.rng.chance(85) {
                return self.rng.pick(values).clone();
            }
            return json!(self.strings());
        }
        let types: Vec<String> = match &schema["type"] {
            Value::String(t) => vec![t.clone()],
            Value::Array(ts) => ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            _ => vec!["string".to_owned()],
        };
        let nullable = types.iter().any(|t| t == "null");
        if nullable && self.rng.chance(15) {
            return json!(null);
        }
        let kind = types.iter().find(|t| *t != "null").cloned().unwrap_or_default();
        match kind.as_str() {
            "string" => match schema["format"].as_str() {
                Some("uuid") => self.uuid(name),
                Some("date-time") => json!(self.rng.pick(&["2030-01-01T00:00:00Z", "yesterday", ""]).to_owned()),
                _ => json!(self.strings()),
            },
            "integer" | "number" => {
                let pool = [
                    json!(0),
                    json!(1),
                    json!(-1),
                    json!(7),
                    json!(50),
                    json!(200),
                    json!(201),
                    json!(365),
                    json!(100_000),
                    json!(i64::MAX),
                    json!(i64::MIN),
                    json!(2.5),
                ];
                self.rng.pick(&pool).clone()
            }
            "boolean" => json!(self.rng.chance(50)),
            "array" => {
                let n = self.rng.below(4);
                let items = schema["items"].clone();
                Value::Array((0..n).map(|_| self.value(&items, depth + 1)).collect())
            }
            "object" => {
                let required: Vec<String> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let mut out = serde_json::Map::new();
                if let Some(props) = schema["properties"].as_object() {
                    for (name, prop) in props {
                        let keep = if required.contains(name) {
                            self.rng.chance(92)
                        } else {
                            self.rng.chance(50)
                        };
                        if keep {
                            out.insert(name.clone(), self.field(name, prop, depth + 1));
                        }
                    }
                }
                if self.rng.chance(5) {
                    out.insert(self.strings(), json!("unknown field"));
                }
                Value::Object(out)
            }
            _ => json!(self.strings()),
        }
    }

    /// A value for a path parameter that follows `collection` in the template.
    fn path_value(&mut self, collection: &str) -> String {
        let fx = self.fx;
        let real = match collection {
            "workspaces" => fx.workspace,
            "sessions" => fx.session,
            "artifacts" => fx.artifact,
            "versions" => fx.version,
            "members" | "participants" => fx.member.id,
            "tokens" => fx.token_id,
            "invitations" => fx.invitation_id,
            _ => fx.workspace,
        };
        match self.rng.below(20) {
            0..=14 => real.to_string(),
            15 | 16 => self.rng.uuid().to_string(),
            17 => fx.owner.id.to_string(),
            _ => encode(&self.strings()),
        }
    }

    fn query_value(&mut self, schema: &Value) -> String {
        let schema = self.schema(schema);
        let kind = match &schema["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => ts
                .iter()
                .filter_map(|t| t.as_str())
                .find(|t| *t != "null")
                .unwrap_or("string")
                .to_owned(),
            _ => "string".to_owned(),
        };
        if self.rng.chance(15) {
            return encode(&self.strings());
        }
        match kind.as_str() {
            "integer" => self
                .rng
                .pick(&[
                    "0",
                    "1",
                    "-1",
                    "2",
                    "50",
                    "200",
                    "201",
                    "99999999999999999999",
                    "1e3",
                    "",
                ])
                .to_string(),
            "boolean" => self.rng.pick(&["true", "false", "1", "yes"]).to_string(),
            _ => {
                let fx = self.fx;
                let pool = [
                    "current".to_owned(),
                    fx.version.to_string(),
                    Uuid::new_v4().to_string(),
                    "%00".to_owned(),
                ];
                self.rng.pick(&pool).clone()
            }
        }
    }
}

/// One operation of the document.
struct Operation {
    method: Method,
    template: String,
    spec: Value,
}

impl Operation {
    fn destructive(&self) -> bool {
        self.method == Method::DELETE || self.template.ends_with("/logout") || self.template.ends_with("/leave")
    }

    fn declares(&self, status: u16) -> bool {
        let responses = &self.spec["responses"];
        responses.get(status.to_string()).is_some() || responses.get("default").is_some()
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, spec) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            ops.push(Operation {
                method,
                template: template.clone(),
                spec: spec.clone(),
            });
        }
    }
    ops
}

/// One generated request and what came back.
struct Sent {
    description: String,
    status: u16,
    /// The error envelope's `code`, when the body is one.
    code: Option<String>,
    body: String,
}

async fn send(app: &TestApp, op: &Operation, g: &mut Gen<'_>) -> Sent {
    let fx = g.fx;
    // The path.
    let mut path = String::new();
    let mut previous = "";
    for segment in op.template.split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        if segment.starts_with('{') {
            path.push_str(&g.path_value(previous));
        } else {
            path.push_str(segment);
        }
        previous = segment;
    }
    // The query.
    let mut query = Vec::new();
    for param in op.spec["parameters"].as_array().into_iter().flatten() {
        if param["in"] == "query" && g.rng.chance(70) {
            let value = g.query_value(&param["schema"]);
            query.push(format!("{}={value}", param["name"].as_str().unwrap()));
        }
    }
    if g.rng.chance(5) {
        query.push("unknown=1".to_owned());
    }
    let mut url = format!("{}{path}", app.base);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    // The body.
    let schema = op.spec["requestBody"]["content"]["application/json"]["schema"].clone();
    let (content_type, body): (Option<&str>, Option<Vec<u8>>) = if schema.is_null() {
        if g.rng.chance(5) {
            (Some("application/json"), Some(b"{\"surprise\":true}".to_vec()))
        } else {
            (None, None)
        }
    } else {
        match g.rng.below(100) {
            0..=84 => (
                Some("application/json"),
                Some(g.value(&schema, 0).to_string().into_bytes()),
            ),
            85..=88 => (None, None),
            89..=91 => (Some("application/json"), Some(b"{\"unterminated\": ".to_vec())),
            92..=94 => (Some("text/plain"), Some(g.value(&schema, 0).to_string().into_bytes())),
            95..=96 => (
                Some("application/json"),
                Some(json!([g.value(&schema, 0)]).to_string().into_bytes()),
            ),
            _ => {
                let huge = json!({ "name": "x".repeat(70 * 1024) });
                (Some("application/json"), Some(huge.to_string().into_bytes()))
            }
        }
    };
    // The credentials.
    let auth = match g.rng.below(100) {
        0..=77 => Some(format!("Bearer {}", fx.owner.token)),
        78..=85 => Some(format!("Bearer {}", fx.api_token)),
        86..=89 => Some(format!("Bearer {}", fx.member.token)),
        90..=93 => None,
        94..=97 => Some("Bearer bcs_not-a-real-token".to_owned()),
        _ => Some("Basic dXNlcjpwYXNz".to_owned()),
    };
    let mut req = app.http.request(op.method.clone(), &url);
    if let Some(auth) = &auth {
        req = req.header("Authorization", auth);
    }
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let excerpt = body
        .as_ref()
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
        .unwrap_or_default();
    if let Some(body) = body {
        req = req.body(body);
    }
    let res = req.send().await.expect("request sent");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|b| b["code"].as_str().map(str::to_owned));
    let auth = auth.map(|a| a.chars().take(12).collect::<String>()).unwrap_or_default();
    Sent {
        description: format!(
            "{} {url} auth={auth}… content-type={content_type:?} body={excerpt}",
            op.method
        ),
        status,
        code,
        body: text.chars().take(300).collect(),
    }
}

#[actix_web::test]
async fn generated_requests_get_no_5xx_and_only_declared_statuses() {
    let seed = env_or("GEN_SEED", 0x0b5e_55ed);
    let cases = env_or("GEN_CASES", 20);
    let rounds = env_or("GEN_ROUNDS", 2);
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let mut ops = operations(&doc);
    assert!(ops.len() > 40, "the document lists the API: {}", ops.len());
    let mut rng = Rng(seed);
    // Kinds of violation (operation, status, code) with one request that shows each.
    let mut violations: BTreeMap<String, String> = BTreeMap::new();
    let mut sent = 0;
    // What the run reached: (operation, status) pairs, for the log.
    let mut seen: std::collections::BTreeSet<(String, u16)> = Default::default();
    for _ in 0..rounds {
        let fx = fixture(&app).await;
        // Shuffle, then the calls that destroy the fixture last.
        for i in (1..ops.len()).rev() {
            ops.swap(i, rng.below(i + 1));
        }
        ops.sort_by_key(|op| op.destructive());
        let mut g = Gen {
            rng: Rng(rng.next()),
            doc: &doc,
            fx: &fx,
        };
        for op in &ops {
            for _ in 0..cases {
                let answer = send(&app, op, &mut g).await;
                sent += 1;
                let code = answer.code.clone();
                seen.insert((format!("{} {}", op.method, op.template), answer.status));
                let problem = if answer.status >= 500 {
                    Some("a server error")
                } else if !op.declares(answer.status) {
                    Some("a status the document does not declare")
                } else if answer.status >= 400 && code.is_none() {
                    Some("an error without the error envelope")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    let kind = format!(
                        "{} {} -> {} {} ({problem})",
                        op.method,
                        op.template,
                        answer.status,
                        code.as_deref().unwrap_or("-")
                    );
                    violations
                        .entry(kind)
                        .or_insert_with(|| format!("{}\n      answer: {}", answer.description, answer.body));
                }
            }
        }
    }
    let succeeded: std::collections::BTreeSet<&String> = seen
        .iter()
        .filter(|(_, status)| *status < 300)
        .map(|(op, _)| op)
        .collect();
    println!(
        "{sent} requests to {} operations: {} (operation, status) pairs; {} operations answered 2xx at least once",
        ops.len(),
        seen.len(),
        succeeded.len()
    );
    let report: Vec<String> = violations.iter().map(|(k, v)| format!("  {k}\n      {v}")).collect();
    assert!(
        violations.is_empty(),
        "GEN_SEED={seed} GEN_CASES={cases} GEN_ROUNDS={rounds}: {} kinds of violation in {sent} requests:\n{}",
        violations.len(),
        report.join("\n")
    );
}
