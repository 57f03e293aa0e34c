//! start-all-workers refuses, before touching Redis or the queue, a plan that can never fit the
//! server, with one line saying what to change and exit code 2 (PM2 then leaves it stopped).

use std::process::Command;

#[test]
fn a_plan_that_cannot_fit_is_refused_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_start-all-workers"))
        .env_clear()
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("WORKER_COUNT", "3")
        .env("OCR_WORKER_POOL_SIZE", "2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("WORKER_COUNT (3) registre + OCR_WORKER_POOL_SIZE (2) OCR workers need 11.5 vCPU / 4.25 GB but this server has 6.4 vCPU / 12.8 GB usable"),
        "{stderr}"
    );
    assert!(stdout.contains("📐 Capacity plan: 3 registre + 2 OCR worker(s) (1 index, 1 acte)"), "{stdout}");
}

#[test]
fn bad_configuration_is_one_line_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_start-all-workers"))
        .env_clear()
        .env("PROD_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("OCR_WORKER_POOL_SIZE", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "configuration error: OCR_WORKER_POOL_SIZE=abc: expected a whole number");
}
