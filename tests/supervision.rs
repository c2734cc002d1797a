//! A part of `keyward run` that stops takes the process down with it, with a non-zero exit
//! and a log line saying which part: an operator never lingers half-alive.

mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[tokio::test]
async fn a_part_that_stops_ends_the_process_with_an_error() {
    // The metrics server cannot bind a port that is taken: that part ends at once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local addr");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args([
                "run",
                "--log-format",
                "text",
                "--namespace",
                "supervision-none",
            ])
            .args(["--metrics-addr", &addr.to_string()])
            .env("KUBECONFIG", support::operator_kubeconfig_path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("keyward run kept running after a part stopped")
    .expect("running keyward");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("metrics server") && logs.contains("stopped"),
        "the log does not say which part stopped:\n{logs}"
    );
    assert!(!logs.contains("panicked at"), "{logs}");
}
