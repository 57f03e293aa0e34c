//! Capacity accounting against a real Redis: the checklist's numbers, no over-allocation under
//! many processes, crash recovery through lease expiry, idempotent release, lost leases, and a
//! Redis restart under a running heartbeat.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use redis::Commands;
use registre_capacity::{Allocation, Renewal, Shortfall, WorkerRecord, WorkerType};
use registre_domain::keys::CapacityKeys;
use registre_config::Milli;
use registre_testkit::{child, redis_sync, shared_redis_url, unique, RedisServer};
use tokio_util::sync::CancellationToken;

mod common;
use common::manager;

fn granted(a: Allocation) -> bool {
    common::granted(&a)
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
    // Every lease's expiry in the sorted set is the expiresAt of that worker's own record.
    let leases: Vec<(String, u64)> = c.zrange_withscores("server:leases", 0, -1).unwrap();
    assert_eq!(leases.len(), 3);
    for (id, exp) in &leases {
        let r: serde_json::Value = serde_json::from_str(&workers[id]).unwrap();
        assert_eq!(Some(*exp), r["expiresAt"].as_u64(), "{id}: lease score vs record {r}");
        assert!(*exp > r["startedAt"].as_u64().unwrap(), "{id}: a lease expires after it started: {r}");
    }

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
    // Nobody renews w2: wait (polling, generous deadline) until Redis's clock has passed its expiry.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = m.status().await.unwrap();
        if status.workers.is_empty() {
            assert_eq!(status.cpu_allocated, Milli::ZERO);
            break;
        }
        assert!(status.workers.iter().all(|w| w.expires_at > status.now_ms), "status only shows live leases: {status:?}");
        assert!(Instant::now() < deadline, "w2's lease never expired: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    // While the server is full the waiter retries without ever holding a lease: sample the
    // state a number of times (no timing bound: each sample is a fact about that moment).
    for _ in 0..10 {
        let status = m.status().await.unwrap();
        assert_eq!(status.cpu_allocated, Milli(6000));
        assert!(status.workers.iter().all(|w| w.worker_id != "r3"), "r3 must not hold a lease while the server is full");
        assert!(!waiter.is_finished(), "the third worker must wait while the server is full");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    first.release().await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(60), waiter).await.expect("third starts once capacity frees").unwrap();
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
    let _: () = redis::cmd("RPUSH").arg(format!("{ns}:ready")).arg(std::process::id()).query_async(&mut c).await.unwrap();
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
    // Every child connected and waiting before the first round, so the rounds are contended.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.llen::<_, usize>(format!("{ns}:ready")).unwrap() < PROCESSES {
        assert!(Instant::now() < deadline, "children did not all start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut per_round = Vec::new();
    for round in 1..=ROUNDS {
        let _: () = redis::cmd("DEL").arg(keys.cpu_allocated.as_str()).arg(keys.ram_allocated.as_str()).arg(keys.workers.as_str()).arg(keys.leases.as_str()).query(&mut c).unwrap();
        let _: () = c.set(format!("{ns}:round"), round).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
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

const CRASH_TTL_MS: u64 = 3000;
const CRASH_HEARTBEAT_MS: u64 = 300;

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
    tokio::time::sleep(Duration::from_secs(300)).await;
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

    // The heartbeat keeps the lease: its expiry moves forward, past the first one, several times.
    let first = m.status().await.unwrap().workers.first().map(|w| w.expires_at).expect("doomed holds a lease");
    let mut seen = vec![first];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 4 {
        let status = m.status().await.unwrap();
        assert_eq!(status.workers.iter().map(|w| w.worker_id.as_str()).collect::<Vec<_>>(), ["doomed"], "the holder lost its lease while alive");
        let exp = status.workers[0].expires_at;
        if exp > *seen.last().unwrap() {
            seen.push(exp);
        }
        assert!(Instant::now() < deadline, "the heartbeat never renewed the lease: expiries {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!granted(m.allocate("newcomer", WorkerType::Registre).await.unwrap()), "server is full while the holder lives");

    holder.kill().unwrap(); // SIGKILL: no release, no cleanup
    holder.wait().unwrap();
    // Nothing releases it: the capacity comes back through the lease's expiry alone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = m.status().await.unwrap();
        if status.cpu_allocated == Milli::ZERO {
            assert!(status.workers.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "capacity never came back: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let deadline = Instant::now() + Duration::from_secs(60);
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

// ---- switching a lease's type (an OCR worker changing mode) ---------------------------------

#[tokio::test]
async fn switch_replaces_the_lease_or_refuses_and_keeps_the_old_one() {
    let url = shared_redis_url();
    let id = unique("srv");
    // 5 vCPU: 4 usable. An acte lease (1) + a 1.5 filler = 2.5; switching to index (1.5) makes 3.
    let m = manager(&url, &[("SERVER_ID", &id), ("SERVER_MAX_CPU", "5")]);
    let mut lease = m.try_lease("ocr-worker-1-0a0b0c0d", WorkerType::ActeOcr).await.unwrap().unwrap();
    assert!(granted(m.allocate("filler", WorkerType::IndexOcr).await.unwrap()));
    assert_eq!(lease.switch(WorkerType::IndexOcr).await.unwrap(), Ok(()));
    let status = m.status().await.unwrap();
    assert_eq!((status.cpu_allocated, status.ram_allocated), (Milli(3000), Milli(1500)));
    let record = status.workers.iter().find(|w| w.worker_id == "ocr-worker-1-0a0b0c0d").unwrap();
    assert_eq!(record.kind, "index-ocr");
    assert_eq!(lease.kind(), WorkerType::IndexOcr);

    // Back to acte (2.5), then a second filler (4 of 4): going to index would need 4.5, so the
    // switch is refused and the acte lease stays exactly as it was.
    assert_eq!(lease.switch(WorkerType::ActeOcr).await.unwrap(), Ok(()));
    assert!(granted(m.allocate("filler2", WorkerType::IndexOcr).await.unwrap()));
    let before = m.status().await.unwrap();
    assert_eq!(before.cpu_allocated, Milli(4000));
    let refused = lease.switch(WorkerType::IndexOcr).await.unwrap();
    assert_eq!(refused, Err(Shortfall::Cpu { need: Milli(1500), available: Milli(1000) }), "{before:?}");
    let after = m.status().await.unwrap();
    assert_eq!((after.cpu_allocated, after.ram_allocated), (before.cpu_allocated, before.ram_allocated));
    let record = after.workers.iter().find(|w| w.worker_id == "ocr-worker-1-0a0b0c0d").expect("the old lease is still held");
    assert_eq!(record.kind, "acte-ocr");
    assert_eq!(lease.kind(), WorkerType::ActeOcr);
    assert!(lease.is_held());
    lease.release().await.unwrap();
    m.release("filler").await.unwrap();
    m.release("filler2").await.unwrap();
}

const SWITCHERS: usize = 4;
const SWITCHES: usize = 150;
const FILLERS: usize = 8;

/// OCR workers switching mode over and over while other workers (own connections, as other
/// processes would have) allocate and release the same budget as fast as they can, and a monitor
/// reads the server's state: at every reading every switching worker holds exactly one lease and
/// the allocated sums stay within the usable budget and equal the sum of the live leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switches_under_contention_never_leave_a_worker_without_a_lease() {
    let url = shared_redis_url();
    let id = unique("srv");
    // 10 vCPU, 20 % reserve: 8 usable; RAM is not the limit here.
    let vars = [("SERVER_ID", id.as_str()), ("SERVER_MAX_CPU", "10"), ("SERVER_MAX_RAM", "64"), ("CAPACITY_HEARTBEAT_MS", "20")];
    let m = manager(&url, &vars);
    let usable = m.settings().usable_cpu;
    let mut leases = Vec::new();
    for i in 0..SWITCHERS {
        let worker = manager(&url, &vars);
        leases.push(worker.try_lease(&format!("ocr-worker-{i}-cafe0000"), WorkerType::ActeOcr).await.unwrap().unwrap());
    }
    let ids: Vec<String> = leases.iter().map(|l| l.worker_id().to_string()).collect();
    let done = CancellationToken::new();

    let monitor = {
        let m = manager(&url, &vars);
        let ids = ids.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut readings = 0u64;
            while !done.is_cancelled() {
                let s = m.status().await.unwrap();
                assert!(s.cpu_allocated <= usable, "over-allocated: {} of {usable}: {:?}", s.cpu_allocated, s.workers);
                let sum: u64 = s.workers.iter().map(|w| (w.cpu * 1000.0).round() as u64).sum();
                assert_eq!(s.cpu_allocated, Milli(sum), "sums drifted from the leases: {:?}", s.workers);
                for id in &ids {
                    let n = s.workers.iter().filter(|w| &w.worker_id == id).count();
                    assert_eq!(n, 1, "{id} holds {n} leases at one reading: {:?}", s.workers);
                }
                readings += 1;
            }
            readings
        })
    };
    let fillers: Vec<_> = (0..FILLERS)
        .map(|i| {
            let m = manager(&url, &vars);
            let done = done.clone();
            tokio::spawn(async move {
                let id = format!("filler-{i}");
                let mut granted_count = 0u64;
                while !done.is_cancelled() {
                    if granted(m.allocate(&id, WorkerType::IndexOcr).await.unwrap()) {
                        granted_count += 1;
                        m.release(&id).await.unwrap();
                    }
                }
                granted_count
            })
        })
        .collect();
    let switchers: Vec<_> = leases
        .into_iter()
        .map(|mut lease| {
            tokio::spawn(async move {
                let (mut switched, mut refused) = (0u64, 0u64);
                for _ in 0..SWITCHES {
                    let to = if lease.kind() == WorkerType::IndexOcr { WorkerType::ActeOcr } else { WorkerType::IndexOcr };
                    match lease.switch(to).await.unwrap() {
                        Ok(()) => {
                            assert_eq!(lease.kind(), to);
                            switched += 1;
                        }
                        Err(_) => refused += 1,
                    }
                    assert!(lease.is_held());
                }
                (lease, switched, refused)
            })
        })
        .collect();
    let mut results = Vec::new();
    for s in switchers {
        results.push(s.await.unwrap());
    }
    done.cancel();
    let readings = monitor.await.unwrap();
    let mut filled = 0;
    for f in fillers {
        filled += f.await.unwrap();
    }
    let switched: u64 = results.iter().map(|r| r.1).sum();
    let refused: u64 = results.iter().map(|r| r.2).sum();
    println!("{switched} switches done, {refused} refused (kept the old lease), {filled} filler allocations, {readings} monitor readings");
    assert!(switched > 0 && readings > 0 && filled > 0, "the contention did not happen: {switched} switches, {readings} readings, {filled} fillers");

    // After the storm: each worker holds exactly the lease of the type its Lease says.
    let status = m.status().await.unwrap();
    for (lease, _, _) in &results {
        let record = status.workers.iter().find(|w| w.worker_id == lease.worker_id()).expect("lease held");
        assert_eq!(record.kind, lease.kind().as_str());
    }
    for (lease, _, _) in results {
        assert!(lease.release().await.unwrap());
    }
    assert_eq!(m.status().await.unwrap().cpu_allocated, Milli::ZERO);
}
