//! The allocated keys are running sums (each script adds or takes away only the lease it changes,
//! sweep takes away expired ones): this checks they never drift from a full recount under random
//! allocate / switch / renew / release / expiry from many tasks at once, and that `status` (the
//! full recount) repairs a hand-edited sum.

use std::collections::HashMap;
use std::time::Duration;

use redis::Commands;
use registre_capacity::{Allocation, CapacityManager, WorkerType};
use registre_config::Milli;
use registre_testkit::{redis_sync, shared_redis_url, unique};

mod common;

fn manager(redis_url: &str, server_id: &str, lease_ttl_ms: &str) -> CapacityManager {
    let vars = [
        ("SERVER_ID", server_id),
        ("SERVER_MAX_CPU", "10"),
        ("SERVER_MAX_RAM", "10"),
        ("CAPACITY_LEASE_TTL_MS", lease_ttl_ms),
        ("CAPACITY_HEARTBEAT_MS", "10"),
    ];
    common::manager(redis_url, &vars)
}

fn milli(text: &str) -> u64 {
    (text.parse::<f64>().unwrap_or_else(|e| panic!("allocated key {text:?}: {e}")) * 1000.0).round() as u64
}

/// One atomic reading (MULTI): the two stored sums, and the recount of every record in the hash
/// (expired or not: the stored sums cover exactly the records present after each script).
fn reading(c: &mut redis::Connection, server: &str) -> ((u64, u64), (u64, u64), usize, usize) {
    let (cpu, ram, workers, leases): (Option<String>, Option<String>, HashMap<String, String>, usize) = redis::pipe()
        .atomic()
        .get(format!("server:{{{server}}}:cpu:allocated"))
        .get(format!("server:{{{server}}}:ram:allocated"))
        .hgetall(format!("server:{{{server}}}:workers"))
        .zcard(format!("server:{{{server}}}:leases"))
        .query(c)
        .expect("reading");
    let (mut rc, mut rr) = (0u64, 0u64);
    for json in workers.values() {
        let v: serde_json::Value = serde_json::from_str(json).expect("record json");
        rc += (v["cpu"].as_f64().expect("cpu") * 1000.0).round() as u64;
        rr += (v["ram"].as_f64().expect("ram") * 1000.0).round() as u64;
    }
    let stored = (cpu.as_deref().map(milli).unwrap_or(0), ram.as_deref().map(milli).unwrap_or(0));
    (stored, (rc, rr), workers.len(), leases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_sums_never_drift_from_a_full_recount() {
    let url = shared_redis_url();
    let server = unique("drift");
    // 150 ms leases: many expire between a task's operations, so sweep's O(expired) path runs often.
    let m = manager(&url, &server, "150");
    let kinds = WorkerType::ALL;
    let stop = tokio_util::sync::CancellationToken::new();

    // A checker reading the keys atomically all along while the tasks run.
    let checker = {
        let (url, server, stop) = (url.clone(), server.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut c = redis_sync(&url);
            let mut readings = 0u64;
            while !stop.is_cancelled() {
                let (stored, recount, workers, leases) = reading(&mut c, &server);
                assert_eq!(stored, recount, "stored sums vs recount of the {workers} records (reading {readings})");
                assert_eq!(workers, leases, "every record has exactly one lease");
                assert!(stored.0 <= 8000 && stored.1 <= 8000, "within the usable budget: {stored:?}");
                readings += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            readings
        })
    };

    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut state = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let (mut granted, mut expiries) = (0u32, 0u32);
            for _ in 0..250 {
                // Ids shared between tasks: allocate/switch/release race on the same records.
                let id = format!("w-{}", next() % 24);
                let kind = kinds[(next() % 3) as usize];
                match next() % 10 {
                    0..=3 => {
                        if matches!(m.allocate(&id, kind).await.expect("allocate"), Allocation::Granted { .. }) {
                            granted += 1;
                        }
                    }
                    4 => {
                        m.switch(&id, kind).await.expect("switch");
                    }
                    5 | 6 => {
                        m.renew(&id).await.expect("renew");
                    }
                    7 | 8 => {
                        m.release(&id).await.expect("release");
                    }
                    _ => {
                        // Let some leases expire (150 ms TTL), so the next script sweeps them.
                        tokio::time::sleep(Duration::from_millis(40 + next() % 160)).await;
                        expiries += 1;
                    }
                }
            }
            (granted, expiries)
        }));
    }
    let (mut granted, mut pauses) = (0, 0);
    for t in tasks {
        let (g, e) = t.await.expect("task");
        granted += g;
        pauses += e;
    }
    stop.cancel();
    let readings = checker.await.expect("checker");
    assert!(granted > 100 && pauses > 50, "the mix ran: {granted} grants, {pauses} pauses");
    assert!(readings > 10, "the checker read while the tasks ran ({readings})");

    // After every lease expired, one script sweeps them all and the sums come back to exactly 0.
    let mut c = redis_sync(&url);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        m.release("nobody").await.expect("release");
        let (stored, recount, workers, leases) = reading(&mut c, &server);
        assert_eq!(stored, recount);
        assert_eq!(workers, leases);
        if workers == 0 {
            assert_eq!(stored, (0, 0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "leases never expired: {workers} left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn status_recounts_and_repairs_a_hand_edited_sum() {
    let url = shared_redis_url();
    let server = unique("repair");
    let m = manager(&url, &server, "30000");
    assert!(matches!(m.allocate("a", WorkerType::Registre).await.unwrap(), Allocation::Granted { .. }));
    assert!(matches!(m.allocate("b", WorkerType::ActeOcr).await.unwrap(), Allocation::Granted { .. }));
    let mut c = redis_sync(&url);
    let cpu_key = format!("server:{{{server}}}:cpu:allocated");
    let _: () = c.set(&cpu_key, "99").unwrap();
    let status = m.status().await.unwrap();
    assert_eq!((status.cpu_allocated, status.ram_allocated), (Milli(4000), Milli(1500)));
    let repaired: String = c.get(&cpu_key).unwrap();
    assert_eq!(repaired, "4");

    // A missing key is recounted by the next script, whichever it is.
    let _: () = c.del(&cpu_key).unwrap();
    assert!(m.release("b").await.unwrap());
    let cpu: String = c.get(&cpu_key).unwrap();
    assert_eq!(cpu, "3");
    // A worker removed by hand from the hash only (sizes now differ): recounted, not subtracted twice.
    let _: () = c.hdel(format!("server:{{{server}}}:workers"), "a").unwrap();
    assert!(!m.release("a").await.unwrap(), "the record was already gone");
    let cpu: String = c.get(&cpu_key).unwrap();
    assert_eq!(cpu, "0");
}
