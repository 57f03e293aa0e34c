//! Capacity accounting against a real Redis: the checklist's numbers, no over-allocation under
//! many processes, crash recovery through lease expiry, idempotent release, lost leases, and a
//! Redis restart under a running heartbeat.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use redis::Commands;
use registre_capacity::{Allocation, CapacityKeys, CapacityManager, CapacitySettings, Renewal, Shortfall, WorkerRecord, WorkerType};
use registre_config::{Config, Milli};
use registre_testkit::{child, redis_sync, shared_redis_url, unique, RedisServer};
use tokio_util::sync::CancellationToken;

/// A manager configured from environment-style variables, as a binary would be.
fn manager(redis_url: &str, vars: &[(&str, &str)]) -> CapacityManager {
    let mut all = vec![("REDIS_URL", redis_url), ("DATABASE_URL", "postgres://localhost/unused")];
    all.extend_from_slice(vars);
    let config = Config::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("test config is valid");
    let conn = registre_runtime::redis_connection(&config.redis_url).expect("redis url");
    CapacityManager::new(conn, CapacitySettings::from_config(&config))
}

fn granted(a: Allocation) -> bool {
    matches!(a, Allocation::Granted { .. })
}

#[tokio::test]
async fn checklist_setup_shows_5_5_cpu_and_2_25_ram_under_the_default_keys() {
    // A private Redis so the exact default keys of the checklist can be used.
    let redis = RedisServer::start();
    let m = manager(&redis.url(), &[("SERVER_MAX_CPU", "8"), ("SERVER_MAX_RAM", "16")]);
    assert!(granted(m.allocate("registre-worker-1-0a1b2c3d", WorkerType::Registre).await.unwrap()));
    assert!(granted(m.allocate("ocr-worker-1", WorkerType::IndexOcr).await.unwrap()));
    assert!(granted(m.allocate("ocr-worker-2", WorkerType::ActeOcr).await.unwrap()));

    let mut c = redis_sync(&redis.url());
    let cpu: String = c.get("server:cpu:allocated").unwrap();
    let ram: String = c.get("server:ram:allocated").unwrap();
    assert_eq!((cpu.as_str(), ram.as_str()), ("5.5", "2.25"));

    let workers: std::collections::HashMap<String, String> = c.hgetall("server:workers").unwrap();
    assert_eq!(workers.len(), 3);
    let record: serde_json::Value = serde_json::from_str(&workers["ocr-worker-1"]).unwrap();
    let mut fields: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["cpu", "expiresAt", "host", "pid", "ram", "startedAt", "type", "workerId"]);
    assert_eq!(record["type"], "index-ocr");
    assert_eq!(record["cpu"], 1.5);
    assert_eq!(record["ram"], 0.75);
    assert_eq!(record["pid"], std::process::id());
    let leases: Vec<(String, u64)> = c.zrange_withscores("server:leases", 0, -1).unwrap();
    assert_eq!(leases.len(), 3);
    assert!(leases.iter().all(|(_, exp)| *exp == record["expiresAt"].as_u64().unwrap() || *exp > 0));

    let status = m.status().await.unwrap();
    assert_eq!((status.cpu_allocated, status.ram_allocated), (Milli(5500), Milli(2250)));
    assert_eq!((status.usable_cpu.to_string(), status.usable_ram.to_string()), ("6.4".into(), "12.8".into()));

    // A fourth worker of 3 vCPU does not fit: 6.4 - 5.5 = 0.9 left.
    let refused = m.allocate("registre-worker-2-ffffffff", WorkerType::Registre).await.unwrap();
    assert_eq!(refused, Allocation::Refused(Shortfall::Cpu { need: Milli(3000), available: Milli(900) }));
    if let Allocation::Refused(s) = refused {
        assert_eq!(s.to_string(), "Insufficient CPU (need 3 vCPUs, available 0.9 vCPUs)");
    }

    for id in ["registre-worker-1-0a1b2c3d", "ocr-worker-1", "ocr-worker-2"] {
        assert!(m.release(id).await.unwrap());
    }
    let cpu: String = c.get("server:cpu:allocated").unwrap();
    let ram: String = c.get("server:ram:allocated").unwrap();
    assert_eq!((cpu.as_str(), ram.as_str()), ("0", "0"));
}

#[tokio::test]
async fn server_id_namespaces_the_keys_with_a_hash_tag() {
    let url = shared_redis_url();
    let id = unique("srv");
    let m = manager(&url, &[("SERVER_ID", &id)]);
    assert!(granted(m.allocate("w1", WorkerType::ActeOcr).await.unwrap()));
    let mut c = redis_sync(&url);
    let cpu: String = c.get(format!("server:{{{id}}}:cpu:allocated")).unwrap();
    assert_eq!(cpu, "1");
    let n: usize = c.hlen(format!("server:{{{id}}}:workers")).unwrap();
    assert_eq!(n, 1);
    m.release("w1").await.unwrap();
}

#[tokio::test]
async fn release_is_idempotent_and_renew_after_expiry_reports_lost() {
    let url = shared_redis_url();
    let id = unique("srv");
    let m = manager(&url, &[("SERVER_ID", &id), ("CAPACITY_LEASE_TTL_MS", "300"), ("CAPACITY_HEARTBEAT_MS", "100")]);

    assert!(granted(m.allocate("w1", WorkerType::Registre).await.unwrap()));
    assert!(matches!(m.renew("w1").await.unwrap(), Renewal::Renewed { .. }));
    assert!(m.release("w1").await.unwrap());
    assert!(!m.release("w1").await.unwrap(), "second release changes nothing");
    assert!(!m.release("never-allocated").await.unwrap());
    assert_eq!(m.status().await.unwrap().cpu_allocated, Milli::ZERO);

    assert!(granted(m.allocate("w2", WorkerType::Registre).await.unwrap()));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(m.renew("w2").await.unwrap(), Renewal::Lost);
    let status = m.status().await.unwrap();
    assert_eq!(status.cpu_allocated, Milli::ZERO);
    assert!(status.workers.is_empty());
}

#[tokio::test]
async fn reallocating_the_same_worker_does_not_count_it_twice() {
    let url = shared_redis_url();
    let id = unique("srv");
    let m = manager(&url, &[("SERVER_ID", &id)]);
    for _ in 0..3 {
        assert!(granted(m.allocate("w1", WorkerType::IndexOcr).await.unwrap()));
    }
    assert_eq!(m.status().await.unwrap().cpu_allocated, Milli(1500));
    // A mode switch: the same id takes the other type's cost.
    assert!(granted(m.allocate("w1", WorkerType::ActeOcr).await.unwrap()));
    let status = m.status().await.unwrap();
    assert_eq!((status.cpu_allocated, status.ram_allocated), (Milli(1000), Milli(500)));
    assert_eq!(status.workers[0].kind, "acte-ocr");
    m.release("w1").await.unwrap();
}

#[tokio::test]
async fn ram_shortfall_is_reported_with_numbers() {
    let url = shared_redis_url();
    let id = unique("srv");
    let m = manager(&url, &[("SERVER_ID", &id), ("SERVER_MAX_CPU", "64"), ("SERVER_MAX_RAM", "2")]);
    assert!(granted(m.allocate("w1", WorkerType::Registre).await.unwrap()));
    let refused = m.allocate("w2", WorkerType::Registre).await.unwrap();
    match refused {
        Allocation::Refused(s) => assert_eq!(s.to_string(), "Insufficient RAM (need 1 GB, available 0.6 GB)"),
        other => panic!("expected a RAM shortfall, got {other:?}"),
    }
    m.release("w1").await.unwrap();
}

#[tokio::test]
async fn waiting_worker_starts_as_soon_as_capacity_frees() {
    let url = shared_redis_url();
    let id = unique("srv");
    // 8 vCPU, 20 % reserve: 6.4 usable, so two registre workers (3 each) fit and a third waits.
    let m = manager(&url, &[("SERVER_ID", &id), ("CAPACITY_RETRY_MAX_MS", "200")]);
    let cancel = CancellationToken::new();
    let first = m.wait_for_lease("r1", WorkerType::Registre, &cancel).await.unwrap();
    let _second = m.wait_for_lease("r2", WorkerType::Registre, &cancel).await.unwrap();
    let waiter = {
        let m = m.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { m.wait_for_lease("r3", WorkerType::Registre, &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiter.is_finished(), "the third worker must wait while the server is full");
    assert_eq!(m.status().await.unwrap().cpu_allocated, Milli(6000));

    first.release().await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("third starts").unwrap();
    let third = third.expect("not cancelled");
    assert_eq!(third.worker_id(), "r3");
    let ids: Vec<String> = m.status().await.unwrap().workers.into_iter().map(|w| w.worker_id).collect();
    assert_eq!(ids, ["r2", "r3"]);

    // A waiter that is cancelled returns None instead of hanging.
    let waiter = {
        let m = m.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { m.wait_for_lease("r4", WorkerType::Registre, &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    assert!(waiter.await.unwrap().is_none());
}

// ---- many processes at once -------------------------------------------------------------

const PROCESSES: usize = 8;
const ATTEMPTS_PER_PROCESS: usize = 8;
const ROUNDS: u64 = 20;

/// Child entry: for each round, waits for the parent's go, fires its attempts at once, reports
/// how many were granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "child process entry point, run by concurrent_allocations_never_over_allocate"]
async fn child_concurrent_allocator() {
    let url = std::env::var("CHILD_REDIS_URL").unwrap();
    let ns = std::env::var("CHILD_SERVER_ID").unwrap();
    let m = manager(&url, &[("SERVER_ID", &ns)]);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for round in 1..=ROUNDS {
        loop {
            let go: Option<u64> = redis::cmd("GET").arg(format!("{ns}:round")).query_async(&mut c).await.unwrap();
            if go == Some(round) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let tasks: Vec<_> = (0..ATTEMPTS_PER_PROCESS)
            .map(|i| {
                let m = m.clone();
                let id = format!("p{}-r{round}-t{i}", std::process::id());
                tokio::spawn(async move { m.allocate(&id, WorkerType::IndexOcr).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if granted(t.await.unwrap()) {
                won += 1;
            }
        }
        let _: () = redis::cmd("RPUSH").arg(format!("{ns}:results:{round}")).arg(won).query_async(&mut c).await.unwrap();
    }
}

#[test]
fn concurrent_allocations_never_over_allocate() {
    let url = shared_redis_url();
    let ns = unique("srv");
    let keys = CapacityKeys::for_server(Some(&ns));
    let mut c = redis_sync(&url);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| child::spawn_test_entry("child_concurrent_allocator", &[("CHILD_REDIS_URL", url.clone()), ("CHILD_SERVER_ID", ns.clone())]))
        .collect();
    // Let every child start and connect before the first round.
    std::thread::sleep(Duration::from_millis(300));
    let mut per_round = Vec::new();
    for round in 1..=ROUNDS {
        let _: () = redis::cmd("DEL").arg(keys.cpu_allocated.as_str()).arg(keys.ram_allocated.as_str()).arg(keys.workers.as_str()).arg(keys.leases.as_str()).query(&mut c).unwrap();
        let _: () = c.set(format!("{ns}:round"), round).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let results_key = format!("{ns}:results:{round}");
        while c.llen::<_, usize>(&results_key).unwrap() < PROCESSES {
            assert!(Instant::now() < deadline, "round {round}: children did not report in time");
            std::thread::sleep(Duration::from_millis(5));
        }
        let results: Vec<u64> = c.lrange(&results_key, 0, -1).unwrap();
        let total: u64 = results.iter().sum();
        let cpu: String = c.get(keys.cpu_allocated.as_str()).unwrap();
        let workers: usize = c.hlen(keys.workers.as_str()).unwrap();
        // 6.4 usable / 1.5 per index-ocr worker: exactly 4 of the 64 attempts fit.
        assert_eq!(total, 4, "round {round}: {total} of {} attempts granted ({results:?})", PROCESSES * ATTEMPTS_PER_PROCESS);
        assert_eq!((cpu.as_str(), workers), ("6", 4), "round {round}");
        per_round.push(total);
    }
    for mut ch in children {
        assert!(ch.wait().unwrap().success(), "a child process failed");
    }
    let _: () = redis::cmd("DEL").arg(keys.cpu_allocated.as_str()).arg(keys.ram_allocated.as_str()).arg(keys.workers.as_str()).arg(keys.leases.as_str()).query(&mut c).unwrap();
    println!("granted per round over {ROUNDS} rounds of {} attempts: {per_round:?}", PROCESSES * ATTEMPTS_PER_PROCESS);
}

// ---- a crashed holder ---------------------------------------------------------------------

const CRASH_TTL_MS: u64 = 2000;
const CRASH_HEARTBEAT_MS: u64 = 500;

#[tokio::test]
#[ignore = "child process entry point, run by killed_holder_gives_capacity_back_after_its_lease"]
async fn child_lease_holder() {
    let url = std::env::var("CHILD_REDIS_URL").unwrap();
    let ns = std::env::var("CHILD_SERVER_ID").unwrap();
    let ttl = CRASH_TTL_MS.to_string();
    let hb = CRASH_HEARTBEAT_MS.to_string();
    let m = manager(&url, &[("SERVER_ID", &ns), ("SERVER_MAX_CPU", "4"), ("CAPACITY_LEASE_TTL_MS", &ttl), ("CAPACITY_HEARTBEAT_MS", &hb)]);
    let lease = m.try_lease("doomed", WorkerType::Registre).await.unwrap().unwrap();
    println!("ALLOCATED {}", lease.worker_id());
    // Held by heartbeats until SIGKILLed.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn killed_holder_gives_capacity_back_after_its_lease() {
    let url = shared_redis_url();
    let ns = unique("srv");
    let ttl = CRASH_TTL_MS.to_string();
    let hb = CRASH_HEARTBEAT_MS.to_string();
    // 4 vCPU with 20 % reserve: 3.2 usable, room for exactly one registre worker.
    let m = manager(&url, &[("SERVER_ID", &ns), ("SERVER_MAX_CPU", "4"), ("CAPACITY_LEASE_TTL_MS", &ttl), ("CAPACITY_HEARTBEAT_MS", &hb)]);
    let mut holder = child::spawn_test_entry("child_lease_holder", &[("CHILD_REDIS_URL", url.clone()), ("CHILD_SERVER_ID", ns.clone())]);
    let stdout = holder.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.find_map(|l| l.ok().filter(|l| l.starts_with("ALLOCATED")))
    })
    .await
    .unwrap();
    assert_eq!(line.as_deref(), Some("ALLOCATED doomed"));

    // Outlive several heartbeats: the lease must stay held well past one TTL.
    tokio::time::sleep(Duration::from_millis(CRASH_TTL_MS + 500)).await;
    let status = m.status().await.unwrap();
    assert_eq!(status.workers.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["doomed"]);
    assert!(!granted(m.allocate("newcomer", WorkerType::Registre).await.unwrap()), "server is full while the holder lives");

    holder.kill().unwrap(); // SIGKILL: no release, no cleanup
    let killed_at = Instant::now();
    holder.wait().unwrap();
    loop {
        if m.status().await.unwrap().cpu_allocated == Milli::ZERO {
            break;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(10), "capacity never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = killed_at.elapsed();
    assert!(
        recovered_in <= Duration::from_millis(CRASH_TTL_MS + CRASH_HEARTBEAT_MS),
        "capacity came back after {recovered_in:?}, more than TTL + one heartbeat"
    );
    assert!(granted(m.allocate("newcomer", WorkerType::Registre).await.unwrap()));
    m.release("newcomer").await.unwrap();
}

// ---- Redis restarted under a running heartbeat ---------------------------------------------

#[tokio::test]
async fn heartbeat_reestablishes_the_lease_after_a_redis_restart() {
    let mut redis = RedisServer::start();
    let m = manager(&redis.url(), &[("CAPACITY_LEASE_TTL_MS", "1000"), ("CAPACITY_HEARTBEAT_MS", "200")]);
    let lease = m.try_lease("registre-worker-1-cafebabe", WorkerType::Registre).await.unwrap().unwrap();

    redis.kill();
    // Heartbeats fail while Redis is down: logged and retried, the task keeps running.
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart(); // empty: no persistence, like a Redis that lost its data

    let mut c = redis_sync(&redis.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cpu: Option<String> = c.get("server:cpu:allocated").unwrap();
        let record: Option<String> = c.hget("server:workers", "registre-worker-1-cafebabe").unwrap();
        if let (Some("3"), Some(record)) = (cpu.as_deref(), &record) {
            let record: WorkerRecord = serde_json::from_str(record).unwrap();
            assert_eq!(record.kind, "registre");
            break;
        }
        assert!(Instant::now() < deadline, "lease not re-established after the restart (cpu={cpu:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lease.is_held());
    assert!(lease.release().await.unwrap());
    let cpu: String = c.get("server:cpu:allocated").unwrap();
    assert_eq!(cpu, "0");
}
