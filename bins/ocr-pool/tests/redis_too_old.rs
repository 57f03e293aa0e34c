//! docs/design.md §13: `ocr-pool` refuses a Redis server older than 6.0 at start-up with one line naming
//! REDIS_URL, the version found and what is needed, and exits 2. The old server is a RESP
//! stand-in answering INFO with redis_version:5.0.7 (no Redis 5 binary exists here).

#[test]
fn a_redis_5_server_is_refused_with_one_line_and_exit_2() {
    registre_testkit::redis6::assert_refuses_redis_5(env!("CARGO_BIN_EXE_ocr-pool"));
}
