//! docs/design.md §13: `ocr-pool` refuses a Redis server older than 6.0 at start-up with one line naming
//! REDIS_URL, the version found and what is needed, and exits 2. The old server is a RESP
//! stand-in answering INFO with redis_version:5.0.7 (no Redis 5 binary exists here).

#[test]
fn a_redis_5_server_is_refused_with_one_line_and_exit_2() {
    let (code, stderr, url) = registre_testkit::redis6::run_binary_against_old_redis(env!("CARGO_BIN_EXE_ocr-pool"), "5.0.7");
    assert_eq!(code, Some(2), "exit code; stderr:\n{stderr}");
    let expected = format!("REDIS_URL={url}: Redis 5.0.7 is too old: Redis 6.0 or newer is needed");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, vec![expected.as_str()], "stderr must be exactly the one line");
}
