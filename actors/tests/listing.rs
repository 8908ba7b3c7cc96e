//! Listings with a real payload store: the payload is sealed in the store
//! before the segment is listed, a refusal leaves no object, a duplicate
//! never overwrites what is listed, the sweep removes orphans only, a
//! restart keeps every listed payload, and a store that is down refuses the
//! listing with `storage_unavailable` and lists nothing.

use std::sync::Arc;
use std::time::Duration;

use pat_actors::listing::SweepSettings;
use pat_actors::messages::{GetSegment, SearchSegments, Shutdown};
use pat_actors::{Engine, EngineActor, EngineError, EngineSettings};
use pat_engine::segment::verify_submission;
use pat_engine::testing::{self, T0, key, signed_segment};
use pat_engine::{Code, SegmentId, SignedSegment};
use pat_storage::s3_server::S3Server;
use pat_storage::{Keyring, Location, MasterKey, PayloadStore, StorageError};

fn settings(dir: &std::path::Path, store: Arc<PayloadStore>) -> EngineSettings {
    EngineSettings {
        payload_store: Some(store),
        // The sweep runs only when a test asks (Listings::sweep), not on a timer.
        sweep: SweepSettings { every: Duration::from_secs(3600), grace: Duration::from_secs(3600) },
        ..EngineSettings::new(dir)
    }
}

fn start(settings: &EngineSettings) -> Engine {
    EngineActor::start(settings.clone(), testing::shared_config(), Arc::new(|| T0 * 1000)).unwrap().0
}

fn listing(provider: u8, salt: u64) -> SignedSegment {
    let payload = testing::payload_salted(3, salt);
    signed_segment(&key(10 + provider), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 20, &payload)
}

async fn list(engine: &Engine, signed: SignedSegment) -> Result<pat_engine::Segment, EngineError> {
    engine.list_segment(verify_submission(signed, &testing::config().domain()).unwrap()).await.unwrap()
}

async fn listed_count(engine: &Engine) -> usize {
    engine.send(SearchSegments { limit: 1000, ..SearchSegments::default() }).await.unwrap().len()
}

fn ring() -> Keyring {
    Keyring::single(MasterKey::generate("k1").unwrap())
}

#[actix_rt::test]
async fn listed_payloads_are_kept_sealed_refusals_and_orphans_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(PayloadStore::open(&Location::Local(tmp.path().join("store")), ring()).unwrap());
    let settings = settings(tmp.path(), store.clone());
    let engine = start(&settings);

    let a = listing(0, 1);
    let segment = list(&engine, a.clone()).await.unwrap();
    assert_eq!(store.get(&segment.payload_hash).await.unwrap(), a, "the listed payload opens to what was signed");

    // A refusal (a window not in the catalogue) leaves no object.
    let mut refused = listing(1, 2);
    refused.submission.window = "2D".into();
    let refused = testing::sign_segment(&key(11), refused.submission, refused.payload);
    let hash = refused.submission.payloadHash;
    assert!(matches!(list(&engine, refused).await, Err(EngineError::Submit(_))));
    assert!(matches!(store.get(&hash).await, Err(StorageError::Missing(_))));
    // A payload that does not hash to its signed payloadHash is refused as such, and never written.
    let mut mismatched = listing(1, 3);
    mismatched.payload = testing::payload_salted(3, 99);
    let hash = mismatched.submission.payloadHash;
    let err = list(&engine, mismatched).await.unwrap_err();
    assert_eq!(err.code(), Code::PayloadHashMismatch, "{err}");
    assert!(matches!(store.get(&hash).await, Err(StorageError::Missing(_))));

    // The same payload from another provider: refused, and the listed objects are untouched.
    let before = std::fs::read(tmp.path().join("store/keys").join(format!("{:x}", a.submission.payloadHash))).unwrap();
    let dup = testing::signed_segment(&key(12), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 5, &a.payload);
    let err = list(&engine, dup).await.unwrap_err();
    assert_eq!(err.code(), Code::DuplicatePayload);
    let after = std::fs::read(tmp.path().join("store/keys").join(format!("{:x}", a.submission.payloadHash))).unwrap();
    assert_eq!(before, after);
    assert_eq!(store.get(&a.submission.payloadHash).await.unwrap(), a);

    // An object no listing names (a crash between store and journal) goes in a sweep, past the grace.
    let orphan = listing(3, 4);
    store.put(&orphan).await.unwrap();
    let listings = engine.listings().unwrap();
    assert_eq!(listings.sweep(&engine, Duration::from_secs(3600)).await.unwrap().changed, 0);
    let walk = listings.sweep(&engine, Duration::ZERO).await.unwrap();
    assert_eq!((walk.examined, walk.changed), (4, 1));
    assert!(matches!(store.get(&orphan.submission.payloadHash).await, Err(StorageError::Missing(_))));
    assert_eq!(store.get(&a.submission.payloadHash).await.unwrap(), a);

    // After a restart the listing and its payload are both there.
    engine.send(Shutdown { snapshot: false }).await.unwrap().unwrap();
    let engine = start(&settings);
    let again = engine.send(GetSegment(SegmentId(0))).await.unwrap().unwrap();
    assert_eq!(again.payload_hash, a.submission.payloadHash);
    assert_eq!(store.get(&again.payload_hash).await.unwrap(), a);
    engine.send(Shutdown { snapshot: false }).await.unwrap().unwrap();
}

#[actix_rt::test]
async fn a_store_that_is_down_refuses_listings_and_lists_nothing_until_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start().unwrap();
    let store = Arc::new(PayloadStore::open(&s3.location("engine"), ring()).unwrap());
    let engine = start(&settings(tmp.path(), store.clone()));

    list(&engine, listing(0, 10)).await.unwrap();
    s3.stop();
    let down = listing(1, 11);
    let err = list(&engine, down.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::StorageUnavailable, "{err}");
    assert_eq!(listed_count(&engine).await, 1, "nothing listed while the store is down");

    s3.resume().unwrap();
    let segment = list(&engine, down.clone()).await.unwrap();
    assert_eq!(store.get(&segment.payload_hash).await.unwrap(), down);
    assert_eq!(listed_count(&engine).await, 2);
    engine.send(Shutdown { snapshot: false }).await.unwrap().unwrap();
}
