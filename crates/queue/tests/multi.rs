//! The multi-environment poller: prod → staging → dev, jobs tagged with their environment, an
//! environment that is down (a closed port) or not migrated is skipped without stalling the others.
//! No timing assertion: the waits are polls with generous deadlines.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_queue::{DocumentSource, MultiQueue, Transition};
use registre_testkit::postgres::TestDatabase;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_down_environment_is_skipped_and_the_others_are_served_in_order() {
    let staging = TestDatabase::create();
    let dev = TestDatabase::create();
    let unmigrated = TestDatabase::create();
    common::migrated(&staging).await;
    common::migrated(&dev).await;
    let closed = format!("postgres://postgres:hunter2@127.0.0.1:{}/nowhere", registre_testkit::free_port());
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", closed.as_str()),
        ("STAGING_DATABASE_URL", staging.url()),
        ("DEV_DATABASE_URL", dev.url()),
        ("QUEUE_POLL_INTERVAL_MS", "50"),
        ("QUEUE_CALL_TIMEOUT_MS", "1000"),
    ])
    .unwrap();
    let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, 4).unwrap());
    assert_eq!(queue.envs(), vec![EnvName::Prod, EnvName::Staging, EnvName::Dev]);
    assert!(!format!("{queue:?}").contains("hunter2"));

    let staging_pool = common::pool(&staging, 2).await;
    let dev_pool = common::pool(&dev, 2).await;
    for n in 0..3 {
        common::insert(&staging_pool, "index", &format!("S-{n}")).await;
        common::insert(&dev_pool, "acte", &format!("D-{n}")).await;
    }
    registre_testkit::postgres::insert_row(&dev_pool, "index", "D-OCR", 3).await;

    let mut order = Vec::new();
    while let Some(job) = queue.claim_any_extraction("multi-1").await {
        order.push((job.env, job.document_number.clone()));
        assert_eq!(queue.complete_extraction(&job, "x/y.pdf", None).await.unwrap(), Transition::Applied);
    }
    let expected: Vec<(EnvName, String)> = ["S-0", "S-1", "S-2"]
        .iter()
        .map(|n| (EnvName::Staging, n.to_string()))
        .chain(["D-0", "D-1", "D-2"].iter().map(|n| (EnvName::Dev, n.to_string())))
        .collect();
    assert_eq!(order, expected);
    assert!(!queue.is_available(EnvName::Prod), "prod is marked down and waits for its retry time");
    assert!(queue.is_available(EnvName::Staging));

    // While prod is down, rounds never call it (its probe runs in the background once its retry
    // time comes); they keep answering from the others.
    for _ in 0..5 {
        assert!(queue.claim_any_extraction("multi-1").await.is_none());
    }

    // Per-source counts over the reachable environments: staging's 3 index + dev's D-OCR, dev's 3 actes.
    let counts = queue.count_waiting().await;
    assert_eq!((counts.get("index"), counts.get("acte")), (Some(&4), Some(&3)));

    // OCR claims go back to the environment the job came from.
    let job = queue.claim_any_ocr("ocr-1", DocumentSource::Acte).await.unwrap();
    assert_eq!(job.env, EnvName::Dev);
    let heartbeat = queue.keep_alive(&job);
    assert_eq!(queue.complete_ocr(&job, "a", "b").await.unwrap(), Transition::Applied);
    drop(heartbeat);

    // Waiting for work returns as soon as a row arrives, and None once stopped.
    let stop = CancellationToken::new();
    let waiter = {
        let (queue, stop) = (queue.clone(), stop.clone());
        tokio::spawn(async move { queue.next_extraction("multi-2", &stop).await })
    };
    common::insert(&dev_pool, "index", "LATE").await;
    let late = tokio::time::timeout(Duration::from_secs(60), waiter).await.unwrap().unwrap().expect("the late row");
    assert_eq!((late.env, late.document_number.as_str()), (EnvName::Dev, "LATE"));
    stop.cancel();
    assert!(queue.next_extraction("multi-2", &stop).await.is_none());

    // An environment that was never migrated is skipped the same way.
    let config = Config::from_vars([("PROD_DATABASE_URL", unmigrated.url()), ("DEV_DATABASE_URL", dev.url())]).unwrap();
    let queue = MultiQueue::connect(&config.environments, &config.queue, 2).unwrap();
    common::insert(&dev_pool, "index", "AFTER").await;
    let job = queue.claim_any_extraction("multi-3").await.expect("dev still served");
    assert_eq!((job.env, job.document_number.as_str()), (EnvName::Dev, "AFTER"));
    assert!(!queue.is_available(EnvName::Prod));

    // The operator runs the migration: prod comes back at its next probe and is served first again.
    common::migrated(&unmigrated).await;
    let prod_pool = common::pool(&unmigrated, 1).await;
    common::insert(&prod_pool, "index", "PROD-BACK").await;
    common::insert(&dev_pool, "index", "DEV-AFTER").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if queue.is_available(EnvName::Prod) {
            break;
        }
        assert!(Instant::now() < deadline, "prod never came back");
        let _ = queue.count_waiting().await; // any round over the environments starts the probe
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = queue.claim_any_extraction("multi-3").await.unwrap();
    assert_eq!((job.env, job.document_number.as_str()), (EnvName::Prod, "PROD-BACK"));
}
