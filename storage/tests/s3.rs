//! The payload store against a real S3-protocol server (s3s-fs from the
//! toolchain): the same round trip, sweep and rotation as on the local
//! filesystem, and a server that goes away and comes back.

use std::time::{Duration, Instant};

use alloy_primitives::B256;
use pat_engine::SignedSegment;
use pat_engine::testing::{self, T0};
use pat_storage::s3_server::S3Server;
use pat_storage::{Keyring, MasterKey, PayloadStore, StorageError, Walk};

fn listing(salt: u64) -> SignedSegment {
    let payload = testing::payload_salted(6, salt);
    testing::signed_segment(&testing::PROVIDER_KEY, "PURCHASE_INTENT", "1h", 8_000, T0, T0, 2, &payload)
}

fn ring(kid: &str) -> Keyring {
    Keyring::single(MasterKey::generate(kid).unwrap())
}

#[tokio::test]
async fn listings_round_trip_rotate_shred_and_sweep_on_s3() {
    let server = S3Server::start().unwrap();
    let store = PayloadStore::open(&server.location("engine/a"), ring("k1")).unwrap();
    let listings: Vec<_> = (0..4).map(listing).collect();
    for s in &listings {
        store.put(s).await.unwrap();
    }
    for s in &listings {
        assert_eq!(store.get(&s.submission.payloadHash).await.unwrap(), *s);
    }
    // The objects are in the bucket under the prefix, and hold no plaintext.
    let name = format!("{:x}", listings[0].submission.payloadHash);
    let on_disk = std::fs::read(server.root().join("pat/engine/a/payloads").join(&name)).unwrap();
    assert!(!on_disk.windows(16).any(|w| w == &listings[0].payload[..16]));

    let rotated = store.with_keyring(store.keyring().rotated_to(MasterKey::generate("k2").unwrap()).unwrap());
    assert_eq!(rotated.rewrap_all().await.unwrap(), Walk { examined: 4, changed: 4 });
    let after = rotated.with_keyring(rotated.keyring().current_only());
    for s in &listings {
        assert_eq!(after.get(&s.submission.payloadHash).await.unwrap(), *s);
        assert!(matches!(store.get(&s.submission.payloadHash).await, Err(StorageError::UnknownKey { .. })));
    }

    let shredded = listings[1].submission.payloadHash;
    after.shred(&shredded).await.unwrap();
    assert!(matches!(after.get(&shredded).await, Err(StorageError::Shredded(h)) if h == shredded));

    let listed: Vec<B256> = listings[..2].iter().map(|s| s.submission.payloadHash).collect();
    // 4 payload objects and 3 key objects (one shredded); the two unlisted are orphans.
    let orphans = after.orphans(|h| listed.contains(h), Duration::ZERO).await.unwrap();
    assert_eq!(orphans.objects, 7);
    let mut unlisted: Vec<B256> = listings[2..].iter().map(|s| s.submission.payloadHash).collect();
    unlisted.sort();
    assert_eq!(orphans.hashes, unlisted);
    for h in &orphans.hashes {
        after.delete(h).await.unwrap();
    }
    assert!(matches!(after.get(&listings[2].submission.payloadHash).await, Err(StorageError::Missing(_))));
    assert_eq!(after.get(&listings[0].submission.payloadHash).await.unwrap(), listings[0]);
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_within_seconds_and_nothing_is_lost() {
    let mut server = S3Server::start().unwrap();
    let store = PayloadStore::open(&server.location("engine"), ring("k1")).unwrap();
    let (kept, later) = (listing(10), listing(11));
    store.put(&kept).await.unwrap();

    server.stop();
    let began = Instant::now();
    assert!(matches!(store.put(&later).await, Err(StorageError::Unavailable(_))));
    assert!(matches!(store.get(&kept.submission.payloadHash).await, Err(StorageError::Unavailable(_))));
    assert!(began.elapsed() < Duration::from_secs(20), "answered in {:?}", began.elapsed());

    server.resume().unwrap();
    assert_eq!(store.get(&kept.submission.payloadHash).await.unwrap(), kept);
    store.put(&later).await.unwrap();
    assert_eq!(store.get(&later.submission.payloadHash).await.unwrap(), later);
}
