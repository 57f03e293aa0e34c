//! The rate limiter against a real Redis (testkit::shared_redis_url()). Every test uses its own
//! limiter name (testkit::unique), so they run in parallel. The multi-process tests re-run this
//! binary as children (the ignored `child_hammer` entry) and check every rolling window of the
//! grant times Redis reported.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use registre_ratelimit::{Decision, RateLimitError, RateLimitSettings, RateLimiter, Settlement, WaitReason};
use registre_testkit::{child, shared_redis_url, unique};
use tokio_util::sync::CancellationToken;

mod common;
use common::{limiter, max_window, redis_now_ms, wait_until_keys_expired};

struct Run {
    /// (Redis ms, weight): grants (weight 1) or charged tokens.
    entries: Vec<(u64, u64)>,
    /// Which child process each grant came from, in the order of `entries`.
    processes: Vec<usize>,
}

/// Starts `processes` children of `child_hammer`, each with `tasks` tasks acquiring from
/// `start_ms` to `end_ms` (Redis clock), and returns what they printed under `prefix`.
fn spawn_children(processes: usize, env: &[(&str, String)]) -> Vec<std::process::Child> {
    (0..processes)
        .map(|p| {
            let mut env = env.to_vec();
            env.push(("RL_PROCESS", p.to_string()));
            child::spawn_test_entry("child_hammer", &env)
        })
        .collect()
}

fn collect(children: Vec<std::process::Child>, prefix: &str) -> Run {
    let mut run = Run { entries: Vec::new(), processes: Vec::new() };
    for (p, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("child output");
        assert!(out.status.success(), "child {p} failed: {}", String::from_utf8_lossy(&out.stdout));
        for line in child::lines_with_prefix(&String::from_utf8_lossy(&out.stdout), prefix) {
            let mut it = line.split_whitespace().map(|x| x.parse::<u64>().expect("number"));
            let (t, w) = (it.next().expect("time"), it.next().unwrap_or(1));
            run.entries.push((t, w));
            run.processes.push(p);
        }
    }
    run
}

/// The child: RL_TASKS tasks acquire in a loop from RL_START_MS to RL_END_MS (Redis clock), then
/// print what they were granted (`RL GRANT <ms> <process>`) or charged (`RL CHARGE <ms> <tokens>`).
/// RL_MODE: `requests` (estimate 1, acquire again at once), `tokens` (random estimate, a short
/// "call", then settle up or down), `steady` (estimate 1, 10 ms between calls).
#[test]
#[ignore = "child process entry of the multi-process tests"]
fn child_hammer() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} missing"));
    let num = |k: &str| var(k).parse::<u64>().unwrap_or_else(|_| panic!("{k} not a number"));
    let url = var("RL_URL");
    let (start_ms, end_ms) = (num("RL_START_MS"), num("RL_END_MS"));
    let mode = var("RL_MODE");
    let tasks = num("RL_TASKS");
    let now = redis_now_ms(&url);
    let local_start = Instant::now() + Duration::from_millis(start_ms.saturating_sub(now));
    let local_end = Instant::now() + Duration::from_millis(end_ms.saturating_sub(now));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let lines: Vec<String> = rt.block_on(async {
        let limiter = limiter(&url, &var("RL_NAME"), num("RL_RPM"), num("RL_TPM"), num("RL_WINDOW_MS")).await;
        let cancel = CancellationToken::new();
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(local_end.into()).await;
            stopper.cancel();
        });
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (limiter, cancel, mode) = (limiter.clone(), cancel.clone(), mode.clone());
            handles.push(tokio::spawn(async move {
                tokio::time::sleep_until(local_start.into()).await;
                let mut lines = Vec::new();
                loop {
                    let estimate = if mode == "tokens" { rand::random_range(100..=2000u64) } else { 1 };
                    let reservation = match limiter.acquire_wait(estimate, &cancel).await {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(e) => panic!("acquire_wait: {e}"),
                    };
                    match mode.as_str() {
                        "tokens" => {
                            tokio::time::sleep(Duration::from_millis(rand::random_range(0..30))).await;
                            let actual = (estimate as f64 * rand::random_range(0.5..1.5)) as u64;
                            match limiter.settle(&reservation, actual).await.expect("settle") {
                                Settlement::Settled { at_grant, extra, extra_at_ms } => {
                                    assert_eq!(at_grant + extra, actual);
                                    lines.push(format!("RL CHARGE {} {at_grant}", reservation.granted_at_ms()));
                                    if let Some(at) = extra_at_ms {
                                        lines.push(format!("RL CHARGE {at} {extra}"));
                                    }
                                }
                                // The settle came a whole window late: everything charged at `at`.
                                Settlement::Late { tokens, at_ms } => {
                                    assert_eq!(tokens, actual);
                                    if let Some(at) = at_ms {
                                        lines.push(format!("RL CHARGE {at} {tokens}"));
                                    }
                                }
                                Settlement::Unknown => panic!("a reservation of this limiter settled as unknown"),
                            }
                        }
                        "steady" => {
                            lines.push(format!("RL GRANT {}", reservation.granted_at_ms()));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        _ => lines.push(format!("RL GRANT {}", reservation.granted_at_ms())),
                    }
                }
                lines
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.expect("task"));
        }
        all
    });
    for line in lines {
        println!("{line}");
    }
}

/// The settings of one limiter and its run, as the `child_hammer` children read them.
struct Limits {
    rpm: u64,
    tpm: u64,
    window_ms: u64,
}

fn child_env(url: &str, name: &str, limits: Limits, (start, end): (u64, u64), tasks: u32, mode: &str) -> [(&'static str, String); 9] {
    [
        ("RL_URL", url.to_string()),
        ("RL_NAME", name.to_string()),
        ("RL_RPM", limits.rpm.to_string()),
        ("RL_TPM", limits.tpm.to_string()),
        ("RL_WINDOW_MS", limits.window_ms.to_string()),
        ("RL_START_MS", start.to_string()),
        ("RL_END_MS", end.to_string()),
        ("RL_TASKS", tasks.to_string()),
        ("RL_MODE", mode.to_string()),
    ]
}

/// 16 child processes of 4 tasks each hammer one new limiter in `mode` for `windows` windows,
/// starting 1.5 s from now on Redis's clock; returns their `marker` lines and the run's (start, end).
async fn sixteen_processes(label: &str, limits: Limits, windows: u64, mode: &str, marker: &'static str) -> (Run, u64, u64) {
    let url = shared_redis_url();
    let start = redis_now_ms(&url) + 1500;
    let end = start + windows * limits.window_ms;
    let env = child_env(&url, &unique(label), limits, (start, end), 4, mode);
    let children = spawn_children(16, &env);
    let run = tokio::task::spawn_blocking(move || collect(children, marker)).await.expect("collect");
    (run, start, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_processes_never_exceed_rpm_in_any_rolling_window() {
    let (rpm, window_ms, windows) = (200u64, 2000u64, 3u64);
    let (mut run, start, end) = sixteen_processes("rl-rpm", Limits { rpm, tpm: 1_000_000_000, window_ms }, windows, "requests", "RL GRANT ").await;
    let processes: HashSet<usize> = run.processes.iter().copied().collect();
    let in_run = run.entries.iter().filter(|(t, _)| (start..end).contains(t)).count() as u64;
    let (largest, at) = max_window(&mut run.entries, window_ms);
    let used = in_run as f64 / (rpm * windows) as f64;
    println!(
        "RPM stress: {} grants from {} processes; largest rolling {window_ms} ms window: {largest} grants (limit {rpm}, starting at {at}); \
         {in_run} grants in the {windows} windows = {:.1} % of capacity",
        run.entries.len(),
        processes.len(),
        used * 100.0
    );
    assert!(largest <= rpm, "a rolling window held {largest} grants > {rpm}");
    assert!(used >= 0.95, "only {:.1} % of the capacity was used", used * 100.0);
    assert!(processes.len() >= 12, "grants went to only {} of 16 processes", processes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_processes_never_exceed_tpm_with_settle_corrections() {
    let (tpm, window_ms, windows) = (100_000u64, 2000u64, 3u64);
    let (mut run, start, end) = sixteen_processes("rl-tpm", Limits { rpm: 100_000, tpm, window_ms }, windows, "tokens", "RL CHARGE ").await;
    let in_run: u64 = run.entries.iter().filter(|(t, _)| (start..end).contains(t)).map(|(_, w)| w).sum();
    let (largest, at) = max_window(&mut run.entries, window_ms);
    println!(
        "TPM stress: {} charges; largest rolling {window_ms} ms window: {largest} settled tokens (limit {tpm}, starting at {at}); \
         {in_run} tokens charged in the {windows} windows = {:.1} % of capacity",
        run.entries.len(),
        in_run as f64 * 100.0 / (tpm * windows) as f64
    );
    assert!(largest <= tpm, "a rolling window was charged {largest} tokens > {tpm}");
    assert!(in_run > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_from_one_process_stops_grants_in_all_others() {
    let url = shared_redis_url();
    let name = unique("rl-cool");
    let start = redis_now_ms(&url) + 1500;
    let end = start + 3000;
    let env = child_env(&url, &name, Limits { rpm: 1_000_000, tpm: 1_000_000_000, window_ms: 2000 }, (start, end), 2, "steady");
    let children = spawn_children(4, &env);
    let setter = limiter(&url, &name, 1_000_000, 1_000_000_000, 2000).await;
    tokio::time::sleep(Duration::from_millis((start + 1000).saturating_sub(redis_now_ms(&url)))).await;
    let cooldown = Duration::from_millis(1000);
    let until = setter.cooldown(cooldown).await.expect("cooldown");
    let set_at = until - 1000;
    match setter.acquire(1).await.expect("acquire") {
        Decision::Wait { wait, reason } => {
            assert_eq!(reason, WaitReason::Cooldown);
            assert!(wait <= cooldown);
        }
        other => panic!("granted during a cooldown: {other:?}"),
    }
    let status = setter.status().await.expect("status");
    assert!(status.cooldown_remaining.is_some());
    let run = tokio::task::spawn_blocking(move || collect(children, "RL GRANT ")).await.expect("collect");
    let during: Vec<_> = run.entries.iter().filter(|(t, _)| *t > set_at && *t < until).collect();
    assert!(during.is_empty(), "grants during the cooldown ({set_at}..{until}): {during:?}");
    let before: HashSet<usize> =
        run.entries.iter().zip(&run.processes).filter(|((t, _), _)| *t < set_at).map(|(_, p)| *p).collect();
    let after: HashSet<usize> =
        run.entries.iter().zip(&run.processes).filter(|((t, _), _)| *t >= until).map(|(_, p)| *p).collect();
    assert_eq!(before.len(), 4, "every process was granted before the cooldown");
    assert_eq!(after.len(), 4, "every process was granted again after the cooldown");
    // How soon the waiters woke is not asserted here (machine speed); that they sleep exactly the
    // wait Redis returned, with one acquire before and one after, is proved by
    // `acquire_wait_asks_once_per_wait_and_is_granted_when_the_wait_ends`.
    let first_after = run.entries.iter().map(|(t, _)| *t).filter(|t| *t >= until).min().unwrap_or(u64::MAX);
    println!("cooldown {set_at}..{until}: no grant inside; first grant after it {} ms after the end", first_after - until);
}

#[tokio::test]
async fn an_estimate_above_the_whole_tpm_is_a_clear_error() {
    let url = shared_redis_url();
    let limiter = limiter(&url, &unique("rl-big"), 10, 1000, 60_000).await;
    let err = limiter.acquire(1001).await.expect_err("must be refused");
    assert!(matches!(err, RateLimitError::EstimateTooLarge { estimated_tokens: 1001, tokens_per_window: 1000, .. }));
    let message = err.to_string();
    assert!(message.contains("1001") && message.contains("1000") && message.contains("never"), "{message}");
    let cancel = CancellationToken::new();
    let waited = tokio::time::timeout(Duration::from_secs(1), limiter.acquire_wait(1001, &cancel)).await;
    assert!(matches!(waited, Ok(Err(RateLimitError::EstimateTooLarge { .. }))), "acquire_wait must fail at once: {waited:?}");
    // Exactly the whole budget is fine.
    assert!(matches!(limiter.acquire(1000).await.expect("acquire"), Decision::Granted(_)));
}

/// Polls (deadline 30 s) until the Redis clock is past `ms`: a window has really elapsed.
async fn wait_for_redis_time(url: &str, ms: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis_now_ms(url) <= ms {
        assert!(Instant::now() < deadline, "the Redis clock never passed {ms}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reservation_of_another_limiter_is_left_alone() {
    let url = shared_redis_url();
    let limiter = limiter(&url, &unique("rl-settle"), 10, 1000, 60_000).await;
    let other = self::limiter(&url, &unique("rl-other"), 10, 1000, 60_000).await;
    let Decision::Granted(foreign) = other.acquire(10).await.expect("acquire") else { panic!("not granted") };
    let Decision::Granted(_mine) = limiter.acquire(400).await.expect("acquire") else { panic!("not granted") };
    assert_eq!(limiter.settle(&foreign, 999).await.expect("settle"), Settlement::Unknown);
    let after = limiter.status().await.expect("status");
    assert_eq!((after.requests_in_window, after.tokens_in_window), (1, 400));
    let theirs = other.status().await.expect("status");
    assert_eq!((theirs.requests_in_window, theirs.tokens_in_window), (1, 10));
}

/// A call slower than the window (Gemini calls can run 300 s against a 60 s window): its settle
/// still charges what the API reported, once, at the settle time (the old code dropped it).
#[tokio::test]
async fn a_settle_after_the_window_still_charges_the_actual_tokens_once() {
    let url = shared_redis_url();
    let window = 300;
    let limiter = limiter(&url, &unique("rl-late"), 10, 5000, window).await;
    let Decision::Granted(slow) = limiter.acquire(400).await.expect("acquire") else { panic!("not granted") };
    let Decision::Granted(served_nothing) = limiter.acquire(100).await.expect("acquire") else { panic!("not granted") };
    wait_for_redis_time(&url, served_nothing.granted_at_ms() + window).await;
    let status = limiter.status().await.expect("status");
    assert_eq!((status.requests_in_window, status.tokens_in_window), (0, 0), "the grants left the window");
    // A late settle of 0 tokens (the API served nothing) charges nothing.
    assert_eq!(limiter.settle(&served_nothing, 0).await.expect("settle"), Settlement::Late { tokens: 0, at_ms: None });
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 0);

    let settled = limiter.settle(&slow, 999).await.expect("settle");
    let Settlement::Late { tokens: 999, at_ms: Some(at) } = settled else { panic!("expected a late charge of 999: {settled:?}") };
    assert!(at > slow.granted_at_ms() + window, "charged at the settle time, not the grant time");
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 999);
    // Settling it again (a retry) changes nothing.
    assert_eq!(limiter.settle(&slow, 999).await.expect("settle"), settled);
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 999);
    // The late charge counts against new grants: 999 + 4002 > 5000 waits, 999 + 4001 fits.
    assert!(matches!(limiter.acquire(4002).await.expect("acquire"), Decision::Wait { reason: WaitReason::Tokens, .. }));
    assert!(matches!(limiter.acquire(4001).await.expect("acquire"), Decision::Granted(_)));
}

/// Reservation ids never repeat, even after the limiter was idle long enough for every key to
/// expire (an INCR counter with a TTL restarted at 1, so a late settle of an old reservation
/// could have corrected a new one).
#[tokio::test]
async fn reservation_ids_never_repeat_even_after_the_keys_expired() {
    let url = shared_redis_url();
    let name = unique("rl-ids");
    let window = 200;
    let limiter = limiter(&url, &name, 1000, 1_000_000, window).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let Decision::Granted(r) = limiter.acquire(1).await.expect("acquire") else { panic!("not granted") };
        ids.push(r.id());
    }
    // Idle until every key of the limiter (seq included) has expired.
    wait_until_keys_expired(&url, &name).await;
    // 64 concurrent grants after the idle period: all distinct, all above every earlier id.
    let mut handles = Vec::new();
    for _ in 0..64 {
        let limiter = limiter.clone();
        handles.push(tokio::spawn(async move {
            match limiter.acquire(1).await.expect("acquire") {
                Decision::Granted(r) => r.id(),
                other => panic!("not granted: {other:?}"),
            }
        }));
    }
    let mut after = Vec::new();
    for h in handles {
        after.push(h.await.expect("task"));
    }
    let before_max = *ids.iter().max().expect("ids");
    assert!(after.iter().all(|id| *id > before_max), "an id was handed out again: before {ids:?}, after {after:?}");
    ids.extend(&after);
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "repeated ids: {ids:?}");
}

#[tokio::test]
async fn settle_refunds_in_place_and_charges_an_underestimate_where_it_fits() {
    let url = shared_redis_url();
    let window = 2000;
    let limiter = limiter(&url, &unique("rl-correct"), 100, 1000, window).await;
    let Decision::Granted(a) = limiter.acquire(600).await.expect("acquire") else { panic!("a") };
    match limiter.acquire(600).await.expect("acquire") {
        Decision::Wait { reason: WaitReason::Tokens, wait } => assert!(wait <= Duration::from_millis(window)),
        other => panic!("600 + 600 > 1000 must wait: {other:?}"),
    }
    // Over-estimate: refunded at once.
    let s = limiter.settle(&a, 200).await.expect("settle");
    assert_eq!(s, Settlement::Settled { at_grant: 200, extra: 0, extra_at_ms: None });
    let Decision::Granted(b) = limiter.acquire(600).await.expect("acquire") else { panic!("b must fit now") };
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 800);
    // Under-estimate: 300 extra do not fit now (800 + 300 > 1000); they are charged once a's 200
    // leave the window, i.e. at a's grant time + window.
    let s = limiter.settle(&b, 900).await.expect("settle");
    assert_eq!(s, Settlement::Settled { at_grant: 600, extra: 300, extra_at_ms: Some(a.granted_at_ms() + window) });
    // Idempotent: the same settle again changes nothing.
    assert_eq!(limiter.settle(&b, 900).await.expect("settle"), s);
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 1100);
    // Nothing fits until the extra charge has room: the next grant waits for it.
    match limiter.acquire(1).await.expect("acquire") {
        Decision::Wait { reason: WaitReason::Tokens, .. } => {}
        other => panic!("must wait behind the under-estimate: {other:?}"),
    }
    // Settling b lower again refunds the extra charge first.
    assert_eq!(limiter.settle(&b, 650).await.expect("settle"), Settlement::Settled { at_grant: 600, extra: 50, extra_at_ms: s_extra_at(&s) });
    assert_eq!(limiter.status().await.expect("status").tokens_in_window, 850);
}

fn s_extra_at(s: &Settlement) -> Option<u64> {
    match s {
        Settlement::Settled { extra_at_ms, .. } => *extra_at_ms,
        Settlement::Late { at_ms, .. } => *at_ms,
        Settlement::Unknown => None,
    }
}

/// Script runs on a private redis-server: every limiter script calls TIME exactly once, so the
/// number of TIME calls is the number of decisions Redis made.
fn script_runs(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).expect("INFO commandstats");
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_time:"))
        .filter_map(|rest| rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok())
        .next()
        .unwrap_or(0)
}

/// `acquire_wait` sleeps the wait Redis returned instead of polling: exactly one decision that says
/// "wait", then one that grants, and the grant is never early (a whole window after the first, or
/// after the cooldown's end). Counted on a private server, so no timing bound is needed.
#[tokio::test]
async fn acquire_wait_asks_once_per_wait_and_is_granted_when_the_wait_ends() {
    let server = registre_testkit::RedisServer::start();
    let url = server.url();
    let mut stats = registre_testkit::redis_sync(&url);
    let window = 500;
    let limiter = limiter(&url, &unique("rl-wait"), 1, 1_000_000, window).await;
    let Decision::Granted(first) = limiter.acquire(1).await.expect("acquire") else { panic!("first") };
    let Decision::Wait { wait, reason } = limiter.acquire(1).await.expect("acquire") else { panic!("must wait") };
    assert_eq!(reason, WaitReason::Requests);
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(window), "{wait:?}");
    let cancel = CancellationToken::new();

    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut stats).expect("RESETSTAT");
    let second = limiter.acquire_wait(1, &cancel).await.expect("acquire_wait").expect("granted");
    assert_eq!(script_runs(&mut stats), 2, "one decision to wait, one grant: no polling");
    assert!(second.granted_at_ms() >= first.granted_at_ms() + window, "granted before the first left the window");

    // The same during a cooldown (set once the window has room, so the cooldown is the only wait):
    // told to wait until its end, then granted at or after it.
    wait_for_redis_time(&url, second.granted_at_ms() + window).await;
    let until = limiter.cooldown(Duration::from_millis(400)).await.expect("cooldown");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut stats).expect("RESETSTAT");
    let third = limiter.acquire_wait(1, &cancel).await.expect("acquire_wait").expect("granted");
    assert_eq!(script_runs(&mut stats), 2, "one decision to wait out the cooldown, one grant");
    assert!(third.granted_at_ms() >= until, "granted at {} during the cooldown (until {until})", third.granted_at_ms());

    // Cancelled while waiting (a 10-minute wait): returns None without waiting it out.
    let slow = self::limiter(&url, &unique("rl-cancel"), 1, 1_000_000, 600_000).await;
    assert!(matches!(slow.acquire(1).await.expect("acquire"), Decision::Granted(_)));
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let waiting = tokio::spawn(async move { slow.acquire_wait(1, &c).await });
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), waiting).await.expect("cancel must end the wait").expect("task");
    assert_eq!(result.expect("acquire_wait"), None);
}

#[tokio::test]
async fn status_reports_the_window_and_the_keys_expire_when_idle() {
    let url = shared_redis_url();
    let name = unique("rl-status");
    let limiter = limiter(&url, &name, 5, 1000, 300).await;
    for _ in 0..3 {
        assert!(matches!(limiter.acquire(100).await.expect("acquire"), Decision::Granted(_)));
    }
    let s = limiter.status().await.expect("status");
    assert_eq!((s.requests_in_window, s.tokens_in_window, s.requests_per_window, s.tokens_per_window), (3, 300, 5, 1000));
    assert_eq!(s.cooldown_remaining, None);
    let mut conn = registre_testkit::redis_sync(&url);
    let pattern = format!("ratelimit:{{{name}}}:*");
    let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).expect("KEYS");
    // The grants' set and the state hash (extra charges and a cooldown add their own keys).
    assert!(keys.len() >= 2, "{keys:?}");
    // One window (+1 s margin) after the last entry, nothing is left.
    wait_until_keys_expired(&url, &name).await;
}

/// The API counts a call when it arrives, up to the arrival margin after its grant: each grant
/// keeps its place for window + margin, and the wait Redis reports ends exactly then.
#[tokio::test]
async fn a_grant_keeps_its_place_for_the_window_plus_the_arrival_margin() {
    let url = shared_redis_url();
    let conn = redis::Client::open(url.as_str()).expect("redis url").get_connection_manager().await.expect("redis");
    let settings = RateLimitSettings {
        name: unique("rl-margin"),
        requests_per_window: 2,
        tokens_per_window: 1_000,
        window: Duration::from_millis(10_000),
        arrival_margin: Duration::from_millis(6_000),
    };
    assert_eq!(settings.held_window(), Duration::from_millis(16_000));
    assert_eq!(settings.max_grant_age(), Some(Duration::from_millis(3_000)));
    let limiter = RateLimiter::new(conn, settings).expect("valid settings");

    let first = match limiter.acquire(10).await.expect("acquire") {
        Decision::Granted(r) => r,
        other => panic!("the first request must be granted, got {other:?}"),
    };
    assert!(matches!(limiter.acquire(10).await.expect("acquire"), Decision::Granted(_)));
    let before = redis_now_ms(&url);
    let decision = limiter.acquire(10).await.expect("acquire");
    let after = redis_now_ms(&url);
    let Decision::Wait { wait, reason: WaitReason::Requests } = decision else {
        panic!("a third request inside the held window must wait for requests, got {decision:?}");
    };
    // Redis decided at some instant in [before, after]; the wait ends when the first grant has
    // been held 16 s (not 10).
    let frees_at = first.granted_at_ms() + 16_000;
    let wait = wait.as_millis() as u64;
    assert!(before + wait <= frees_at && frees_at <= after + wait, "wait {wait} ms from [{before}, {after}] does not end at {frees_at}");

    let status = limiter.status().await.expect("status");
    assert_eq!(status.window, Duration::from_millis(16_000), "status counts over the held window");
    assert_eq!(status.requests_in_window, 2);

    let no_margin = RateLimitSettings { arrival_margin: Duration::ZERO, ..limiter.settings().clone() };
    assert_eq!(no_margin.max_grant_age(), None, "no margin: no age limit on grants");
}

/// The acquires one process has in flight at the same moment are decided together (batch.rs): 64
/// tasks asking at once against RPM = 40 get exactly 40 grants with distinct ids and 24 waits for
/// requests, from fewer script calls than acquires (counted on a private server: one TIME per
/// call). On a current-thread runtime the tasks queue while the first calls (two at most) are on their way.
#[tokio::test(flavor = "current_thread")]
async fn acquires_in_flight_together_share_calls_and_each_gets_its_own_decision() {
    let server = registre_testkit::RedisServer::start();
    let url = server.url();
    let mut stats = registre_testkit::redis_sync(&url);
    let limiter = limiter(&url, &unique("rl-batch"), 40, 1_000_000, 60_000).await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut stats).expect("RESETSTAT");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(1).await.expect("acquire") })
        })
        .collect();
    let (mut ids, mut waits) = (HashSet::new(), 0);
    for t in tasks {
        match t.await.expect("task") {
            Decision::Granted(r) => assert!(ids.insert(r.id()), "id {} handed out twice", r.id()),
            Decision::Wait { reason, wait } => {
                assert_eq!(reason, WaitReason::Requests);
                assert!(wait > Duration::ZERO && wait <= Duration::from_millis(60_000), "{wait:?}");
                waits += 1;
            }
        }
    }
    assert_eq!((ids.len(), waits), (40, 24));
    let calls = script_runs(&mut stats);
    assert!(calls < 64, "{calls} script calls for 64 acquires in flight together");
    assert_eq!(limiter.status().await.expect("status").requests_in_window, 40);
}
