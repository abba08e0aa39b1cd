//! Berth's own Python client (`clients/python`, built as a wheel and installed by
//! `ensure_python_client` into target/python-client-venv) runs its test suite against a real
//! control plane and real sessions on the real engine.

mod common;

use std::path::PathBuf;

use common::{ADMIN, Server};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn the_python_client_passes_its_suite_against_a_real_server() {
    let python = repo().join("target/python-client-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `source scripts/lib.sh && ensure_python_client` (scripts/test does)",
        python.display()
    );
    let server = Server::start().await;
    let mut command = tokio::process::Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("clients/python/tests"))
        .env("BERTH_URL", server.client.base_url())
        .env("BERTH_TOKEN", ADMIN);
    let stdout = common::run_to_success(command, "the Python client's suite").await;
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(
        server.containers().is_empty(),
        "the suite's sessions leave no container: {:?}",
        server.containers()
    );
    server.stop().await;
}
