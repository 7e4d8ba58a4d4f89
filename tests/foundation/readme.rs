//! The README's first-session walkthrough, run as written (curl, jq, Node) against a real
//! server, so the commands a new user pastes keep working.

use crate::common::*;

#[actix_web::test]
async fn the_readme_walkthrough_reaches_an_ai_reply() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from = readme
        .find("A first session from a shell")
        .expect("the README has its walkthrough");
    let script = readme[from..]
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the walkthrough is a sh block");
    if std::process::Command::new("jq").arg("--version").output().is_err() {
        eprintln!("NOTICE: jq is not installed; the README walkthrough test is skipped");
        return;
    }
    let app = spawn_app().await;
    let script = script.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", app.port));
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "\"role\":\"editor\"",
        "caught_up",
        "ack",
        "ai_chunk",
        "event message.completed",
    ] {
        assert!(
            stdout.contains(expected),
            "`{expected}` missing from:\n{stdout}\n{stderr}"
        );
    }
    assert!(!stdout.contains("error"), "{stdout}");
}
