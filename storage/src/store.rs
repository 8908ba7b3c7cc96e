//! The payload store: sealed listings in an object store, by payload hash.
//! Each listing is two objects under the store's prefix, `payloads/{hash}`
//! and `keys/{hash}` (see [`crate::envelope`]). This is the only code of the
//! workspace that talks to the object store.
//!
//! Backends: the local filesystem (every put fsynced, file and directory,
//! and every delete's directory, before it returns), S3 and GCS by URL with their credentials from the
//! usual environment variables. Remote calls retry briefly and time out, so
//! a store that is down answers [`StorageError::Unavailable`] within seconds
//! rather than holding a listing or a download for minutes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use alloy_primitives::B256;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};
use pat_engine::SignedSegment;
use thiserror::Error;

use crate::envelope::{self, Listing, OpenError};
use crate::key::Keyring;

/// How long one remote request may take; a call retries at most twice, and
/// starts no retry after this long either.
pub const REMOTE_DEADLINE: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("the payload store is unavailable: {0}")]
    Unavailable(String),
    #[error("payload {0} is not in the store")]
    Missing(B256),
    #[error("the payload does not hash to {0}, the listing's payloadHash: not stored")]
    HashMismatch(B256),
    #[error("payload {0} was shredded: its data key is gone")]
    Shredded(B256),
    #[error("payload {hash} is corrupt: {reason}")]
    Corrupt { hash: B256, reason: &'static str },
    #[error("payload {hash} is wrapped under key {kid}, which the keyring does not hold")]
    UnknownKey { hash: B256, kid: String },
    #[error("storage config: {0}")]
    Config(String),
    #[error(
        "the payload store belongs to data directory {owner}, not to this one ({ours}): two engines on one store would sweep each other's payloads"
    )]
    OwnedByAnother { owner: String, ours: String },
}

impl StorageError {
    fn opening(hash: B256, e: OpenError) -> Self {
        match e {
            OpenError::Corrupt(reason) => Self::Corrupt { hash, reason },
            OpenError::UnknownKey(kid) => Self::UnknownKey { hash, kid },
        }
    }
}

fn unavailable(e: object_store::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine, created if missing.
    Local(PathBuf),
    /// `s3://bucket/prefix` or `gs://bucket/prefix`, with builder options
    /// (such as `endpoint`, `region`, `allow_http`) over the environment's.
    Remote { url: String, options: BTreeMap<String, String> },
}

/// What a sweep or a rotation went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Objects looked at.
    pub examined: u64,
    /// Payloads removed (a sweep) or key objects re-wrapped (a rotation).
    pub changed: u64,
}

/// What [`PayloadStore::orphans`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Orphans {
    /// Objects looked at.
    pub objects: u64,
    /// Their bytes, together.
    pub bytes: u64,
    /// Unlisted payloads with every object older than the grace.
    pub hashes: Vec<B256>,
}

/// Sealed listings in an object store.
#[derive(Debug)]
pub struct PayloadStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    keyring: Keyring,
    /// The directory of a local store: object_store fsyncs its puts, not its
    /// deletes, so a delete syncs the directory here.
    local_root: Option<PathBuf>,
}

const PAYLOADS: &str = "payloads";
const KEYS: &str = "keys";
/// The id of the data directory whose engine the store belongs to.
const OWNER: &str = "owner";

impl PayloadStore {
    /// Opens the store at `location`, sealing with `keyring`'s current key.
    /// Nothing is read or written yet.
    pub fn open(location: &Location, keyring: Keyring) -> Result<Self, StorageError> {
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match location {
            Location::Local(dir) => {
                let config = |e: std::io::Error| StorageError::Config(format!("creating {}: {e}", dir.display()));
                std::fs::create_dir_all(dir).map_err(config)?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent).map_err(config)?;
                }
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StorageError::Config(format!("{}: {e}", dir.display())))?
                    .with_fsync(true);
                (Arc::new(fs), Path::default())
            }
            Location::Remote { url, options } => remote(url, options)?,
        };
        let local_root = match location {
            Location::Local(dir) => Some(dir.clone()),
            Location::Remote { .. } => None,
        };
        Ok(Self { store, prefix, keyring, local_root })
    }

    /// The keyring this store seals and opens with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The same store, with another keyring (for a rotation).
    pub fn with_keyring(&self, keyring: Keyring) -> Self {
        Self { store: self.store.clone(), prefix: self.prefix.clone(), keyring, local_root: self.local_root.clone() }
    }

    fn path(&self, kind: &str, hash: &B256) -> Path {
        self.prefix.clone().join(kind).join(hex(hash))
    }

    /// Seals and stores a verified listing whose payload hashes to its
    /// `payloadHash` (else `HashMismatch`, and nothing is written); once this
    /// returns, both objects are durable.
    pub async fn put(&self, signed: &SignedSegment) -> Result<(), StorageError> {
        let hash = signed.submission.payloadHash;
        let sealed = envelope::seal(&self.keyring, signed).map_err(|_| StorageError::HashMismatch(hash))?;
        self.store.put(&self.path(PAYLOADS, &hash), sealed.payload_object.into()).await.map_err(unavailable)?;
        self.store.put(&self.path(KEYS, &hash), sealed.key_object.into()).await.map_err(unavailable)?;
        Ok(())
    }

    /// The two objects of payload `hash` exactly as stored, sealed (payload
    /// object, key object), read at once: what [`PayloadStore::get`] opens,
    /// and the floor the delivery benchmark reads against.
    pub async fn sealed(&self, hash: &B256) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
        let (payload, key) = tokio::join!(self.read(PAYLOADS, hash), self.read(KEYS, hash));
        match (payload?, key?) {
            (Some(payload), Some(key)) => Ok((payload, key)),
            (Some(_), None) => Err(StorageError::Shredded(*hash)),
            (None, _) => Err(StorageError::Missing(*hash)),
        }
    }

    /// The listing of payload `hash`, opened and checked: its payload hashes to `hash`.
    pub async fn get(&self, hash: &B256) -> Result<Listing, StorageError> {
        let (payload_object, key_object) = self.sealed(hash).await?;
        let key =
            envelope::unwrap_key(&self.keyring, hash, &key_object).map_err(|e| StorageError::opening(*hash, e))?;
        envelope::open(&key, hash, payload_object).map_err(|e| StorageError::opening(*hash, e))
    }

    async fn read(&self, kind: &str, hash: &B256) -> Result<Option<Vec<u8>>, StorageError> {
        let got = match self.store.get(&self.path(kind, hash)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        // The buffer object_store read into, not a copy of it.
        Ok(Some(Vec::from(got.bytes().await.map_err(unavailable)?)))
    }

    /// Crypto-shredding: deletes the data key of payload `hash`, after which
    /// its payload object opens for no one. Idempotent.
    pub async fn shred(&self, hash: &B256) -> Result<(), StorageError> {
        self.remove(KEYS, hash).await
    }

    /// Deletes both objects of payload `hash` (a refused listing, an orphan). Idempotent.
    pub async fn delete(&self, hash: &B256) -> Result<(), StorageError> {
        self.remove(KEYS, hash).await?;
        self.remove(PAYLOADS, hash).await
    }

    async fn remove(&self, kind: &str, hash: &B256) -> Result<(), StorageError> {
        match self.store.delete(&self.path(kind, hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(unavailable(e)),
        }
        if let Some(root) = &self.local_root {
            let dir = root.join(kind);
            let synced = tokio::task::spawn_blocking(move || sync_dir(&dir)).await;
            synced
                .map_err(|e| StorageError::Unavailable(e.to_string()))?
                .map_err(|e| StorageError::Unavailable(format!("syncing the store's directory: {e}")))?;
        }
        Ok(())
    }

    /// Makes this store `owner`'s (a data directory's id): written at the
    /// first start, and checked at every later one. An engine never runs on
    /// a store another data directory owns, whose listings it does not know
    /// and whose payloads its sweep would take for orphans.
    pub async fn claim_owner(&self, owner: &str) -> Result<(), StorageError> {
        let path = self.prefix.clone().join(OWNER);
        let found = match self.store.get(&path).await {
            Ok(got) => Some(got.bytes().await.map_err(unavailable)?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(unavailable(e)),
        };
        match found {
            Some(bytes) if bytes.as_ref() == owner.as_bytes() => Ok(()),
            Some(bytes) => Err(StorageError::OwnedByAnother {
                owner: String::from_utf8_lossy(&bytes).into_owned(),
                ours: owner.to_owned(),
            }),
            None => {
                self.store.put(&path, owner.as_bytes().to_vec().into()).await.map_err(unavailable)?;
                Ok(())
            }
        }
    }

    /// Whether the store holds no object of a listing.
    pub async fn is_empty(&self) -> Result<bool, StorageError> {
        for kind in [PAYLOADS, KEYS] {
            let prefix = self.prefix.clone().join(kind);
            if self.store.list(Some(&prefix)).try_next().await.map_err(unavailable)?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every object of kind `kind`, as (hash, last modified, bytes). Names
    /// that are not a payload hash are left out: the sweep never touches them.
    async fn list(&self, kind: &str) -> Result<Vec<(B256, SystemTime, u64)>, StorageError> {
        let prefix = self.prefix.clone().join(kind);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(unavailable)?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let hash = m.location.filename()?.parse::<B256>().ok()?;
                Some((hash, SystemTime::from(m.last_modified), m.size))
            })
            .collect())
    }

    /// The payloads whose objects `listed` does not name and were all last
    /// written more than `grace` ago: what a crash between the store write
    /// and the journal append left behind, or a refusal whose cleanup failed.
    /// The caller deletes each after checking, under its own guard, that it
    /// is still unlisted and not being listed (see `pat_actors::listing`).
    pub async fn orphans(&self, listed: impl Fn(&B256) -> bool, grace: Duration) -> Result<Orphans, StorageError> {
        let cutoff = SystemTime::now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let (mut objects, mut bytes) = (0, 0);
        let mut young = std::collections::HashSet::new();
        let mut old = std::collections::BTreeSet::new();
        for kind in [PAYLOADS, KEYS] {
            for (hash, modified, size) in self.list(kind).await? {
                objects += 1;
                bytes += size;
                if listed(&hash) {
                    continue;
                }
                match modified < cutoff {
                    true => old.insert(hash),
                    false => young.insert(hash),
                };
            }
        }
        let hashes = old.into_iter().filter(|h| !young.contains(h)).collect();
        Ok(Orphans { objects, bytes, hashes })
    }

    /// Removes what a crash in the middle of a local put left: the staging
    /// file (`{hash}#{n}`) the filesystem backend writes before it renames
    /// it into place, which the store's listings never show. Only those
    /// older than `grace` go; a put takes seconds at most. A remote store
    /// stages nothing (one request per object): 0. The number removed.
    pub async fn remove_stale_staging(&self, grace: Duration) -> Result<u64, StorageError> {
        let Some(root) = self.local_root.clone() else { return Ok(0) };
        let cutoff = SystemTime::now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let removed = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut removed = 0;
            for kind in [PAYLOADS, KEYS] {
                let dir = root.join(kind);
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let mut any = false;
                for entry in entries {
                    let entry = entry?;
                    if !entry.file_name().to_str().is_some_and(is_staging_name) {
                        continue;
                    }
                    // A put renaming its staging file into place right now: not ours to remove.
                    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
                    match entry.metadata().and_then(|m| m.modified()) {
                        Ok(modified) if modified < cutoff => {}
                        Err(e) if !gone(&e) => return Err(e),
                        _ => continue,
                    }
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => (removed, any) = (removed + 1, true),
                        Err(e) if gone(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                if any {
                    sync_dir(&dir)?;
                }
            }
            Ok(removed)
        })
        .await;
        removed
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
            .map_err(|e| StorageError::Unavailable(format!("removing staging files: {e}")))
    }

    /// Re-wraps every data key not wrapped under the keyring's current key.
    /// Payload objects are not read or rewritten. A key object wrapped under
    /// a key the keyring lacks stops the rotation with
    /// [`StorageError::UnknownKey`]; what was re-wrapped before stays so.
    pub async fn rewrap_all(&self) -> Result<Walk, StorageError> {
        let current = self.keyring.current().id();
        let mut walk = Walk::default();
        for (hash, _, _) in self.list(KEYS).await? {
            walk.examined += 1;
            let Some(key_object) = self.read(KEYS, &hash).await? else { continue };
            let kid = envelope::key_id(&key_object).map_err(|e| StorageError::opening(hash, e))?;
            if kid == current {
                continue;
            }
            let rewrapped =
                envelope::rewrap(&self.keyring, &hash, &key_object).map_err(|e| StorageError::opening(hash, e))?;
            self.store.put(&self.path(KEYS, &hash), rewrapped.into()).await.map_err(unavailable)?;
            walk.changed += 1;
        }
        Ok(walk)
    }
}

/// Whether `name` is a staging file of the filesystem backend for an
/// object of ours: 64 hex digits, `#`, digits.
fn is_staging_name(name: &str) -> bool {
    let Some((hash, n)) = name.split_once('#') else { return false };
    hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// `B256` as 64 lowercase hex digits, without `0x`: an object's name.
fn hex(hash: &B256) -> String {
    format!("{hash:x}")
}

/// fsyncs a directory, so that entries created or removed in it are durable.
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn remote(url: &str, options: &BTreeMap<String, String>) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    let config = |e: String| StorageError::Config(format!("{url}: {e}"));
    let parsed = url::Url::parse(url).map_err(|e| config(e.to_string()))?;
    let (scheme, path) = ObjectStoreScheme::parse(&parsed).map_err(|e| config(e.to_string()))?;
    let prefix = Path::parse(path).map_err(|e| config(e.to_string()))?;
    let retry = RetryConfig { backoff: BackoffConfig::default(), max_retries: 2, retry_timeout: REMOTE_DEADLINE };
    let client = ClientOptions::new().with_timeout(REMOTE_DEADLINE).with_connect_timeout(Duration::from_secs(2));
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut b = AmazonS3Builder::from_env().with_url(url).with_retry(retry).with_client_options(client);
            for (k, v) in options {
                let key: AmazonS3ConfigKey = k.parse().map_err(|_| config(format!("unknown S3 option `{k}`")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| config(e.to_string()))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut b =
                GoogleCloudStorageBuilder::from_env().with_url(url).with_retry(retry).with_client_options(client);
            for (k, v) in options {
                let key: GoogleConfigKey = k.parse().map_err(|_| config(format!("unknown GCS option `{k}`")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| config(e.to_string()))?)
        }
        other => return Err(config(format!("{other:?} is not a supported store (s3:// or gs://)"))),
    };
    Ok((store, prefix))
}

#[cfg(test)]
mod tests {
    use pat_engine::testing::{self, T0};

    use super::*;
    use crate::key::MasterKey;

    fn listing(salt: u64) -> SignedSegment {
        let payload = testing::payload_salted(4, salt);
        testing::signed_segment(&testing::PROVIDER_KEY, "PURCHASE_INTENT", "1h", 8_000, T0, T0, 2, &payload)
    }

    fn local(dir: &std::path::Path, kid: &str) -> PayloadStore {
        PayloadStore::open(&Location::Local(dir.into()), Keyring::single(MasterKey::generate(kid).unwrap())).unwrap()
    }

    #[tokio::test]
    async fn put_get_shred_delete_on_the_local_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), "k1");
        assert!(store.is_empty().await.unwrap());
        store.claim_owner("data-a").await.unwrap();
        store.claim_owner("data-a").await.unwrap();
        assert!(matches!(store.claim_owner("data-b").await, Err(StorageError::OwnedByAnother { .. })));
        let signed = listing(1);
        let hash = signed.submission.payloadHash;
        assert!(matches!(store.get(&hash).await, Err(StorageError::Missing(h)) if h == hash));
        store.put(&signed).await.unwrap();
        assert_eq!(store.get(&hash).await.unwrap(), signed);
        let name = format!("{hash:x}");
        assert!(dir.path().join("payloads").join(&name).is_file());
        store.shred(&hash).await.unwrap();
        assert!(matches!(store.get(&hash).await, Err(StorageError::Shredded(_))));
        store.shred(&hash).await.unwrap();
        store.delete(&hash).await.unwrap();
        assert!(matches!(store.get(&hash).await, Err(StorageError::Missing(_))));
    }

    #[tokio::test]
    async fn tampering_and_swapped_names_are_corrupt_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), "k1");
        let (a, b) = (listing(2), listing(3));
        store.put(&a).await.unwrap();
        store.put(&b).await.unwrap();
        let path =
            |kind: &str, s: &SignedSegment| dir.path().join(kind).join(format!("{:x}", s.submission.payloadHash));
        // A's payload object filed under B's name.
        std::fs::copy(path("payloads", &a), path("payloads", &b)).unwrap();
        assert!(matches!(store.get(&b.submission.payloadHash).await, Err(StorageError::Corrupt { .. })));
        // One flipped byte in A's ciphertext.
        let mut bytes = std::fs::read(path("payloads", &a)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(path("payloads", &a), bytes).unwrap();
        assert!(matches!(store.get(&a.submission.payloadHash).await, Err(StorageError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn orphans_are_unlisted_payloads_past_the_grace_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), "k1");
        let (kept, orphan) = (listing(4), listing(5));
        store.put(&kept).await.unwrap();
        store.put(&orphan).await.unwrap();
        std::fs::write(dir.path().join("payloads").join("README"), b"not ours").unwrap();
        let listed = |h: &B256| *h == kept.submission.payloadHash;
        // Within the grace: nothing is an orphan.
        let within = store.orphans(listed, Duration::from_secs(600)).await.unwrap();
        assert_eq!((within.objects, within.hashes), (4, vec![]));
        let past = store.orphans(listed, Duration::ZERO).await.unwrap();
        assert_eq!((past.objects, past.hashes), (4, vec![orphan.submission.payloadHash]));
        let on_disk: u64 = ["payloads", "keys"]
            .iter()
            .flat_map(|k| std::fs::read_dir(dir.path().join(k)).unwrap())
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "README")
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(past.bytes, on_disk, "the objects' bytes");
        assert!(!store.is_empty().await.unwrap());
        store.delete(&orphan.submission.payloadHash).await.unwrap();
        assert!(matches!(store.get(&orphan.submission.payloadHash).await, Err(StorageError::Missing(_))));
        assert_eq!(store.get(&kept.submission.payloadHash).await.unwrap(), kept);
        assert!(dir.path().join("payloads").join("README").is_file());
    }

    /// A put cut off by a crash leaves its staging file; once it is older
    /// than the grace it goes, and nothing else does.
    #[tokio::test]
    async fn stale_staging_files_of_a_cut_off_put_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path(), "k1");
        let kept = listing(6);
        store.put(&kept).await.unwrap();
        let name = format!("{:x}", listing(7).submission.payloadHash);
        let staging =
            [dir.path().join("payloads").join(format!("{name}#1")), dir.path().join("keys").join(format!("{name}#12"))];
        let others =
            [dir.path().join("payloads").join("notes#1"), dir.path().join("payloads").join(format!("{name}#x"))];
        for path in staging.iter().chain(&others) {
            std::fs::write(path, b"half a put").unwrap();
        }
        assert_eq!(store.remove_stale_staging(Duration::from_secs(600)).await.unwrap(), 0, "within the grace");
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for path in staging.iter().chain(&others) {
            std::fs::File::options().write(true).open(path).unwrap().set_modified(hour_ago).unwrap();
        }
        assert_eq!(store.remove_stale_staging(Duration::from_secs(600)).await.unwrap(), 2);
        assert!(staging.iter().all(|p| !p.exists()));
        assert!(others.iter().all(|p| p.exists()), "names not ours stay");
        assert_eq!(store.get(&kept.submission.payloadHash).await.unwrap(), kept);
        assert!(
            is_staging_name(&format!("{name}#0")) && !is_staging_name(&format!("{name}#")) && !is_staging_name(&name)
        );
    }

    #[tokio::test]
    async fn rotation_rewraps_keys_without_touching_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let old = local(dir.path(), "k1");
        let listings: Vec<_> = (10..15).map(listing).collect();
        for s in &listings {
            old.put(s).await.unwrap();
        }
        let payload_bytes = |s: &SignedSegment| {
            std::fs::read(dir.path().join("payloads").join(format!("{:x}", s.submission.payloadHash))).unwrap()
        };
        let before: Vec<_> = listings.iter().map(payload_bytes).collect();
        let during = old.with_keyring(old.keyring().rotated_to(MasterKey::generate("k2").unwrap()).unwrap());
        assert_eq!(during.rewrap_all().await.unwrap(), Walk { examined: 5, changed: 5 });
        assert_eq!(during.rewrap_all().await.unwrap(), Walk { examined: 5, changed: 0 });
        let after = during.with_keyring(during.keyring().current_only());
        for (s, bytes) in listings.iter().zip(before) {
            assert_eq!(after.get(&s.submission.payloadHash).await.unwrap(), *s);
            assert_eq!(payload_bytes(s), bytes, "payload objects are not rewritten");
            assert!(matches!(old.get(&s.submission.payloadHash).await, Err(StorageError::UnknownKey { .. })));
        }
    }

    #[test]
    fn remote_urls_are_checked() {
        let ring = || Keyring::single(MasterKey::generate("k").unwrap());
        let open = |url: &str, opts: &[(&str, &str)]| {
            let options = opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            PayloadStore::open(&Location::Remote { url: url.into(), options }, ring())
        };
        assert!(matches!(open("ftp://x/y", &[]), Err(StorageError::Config(_))));
        assert!(matches!(open("not a url", &[]), Err(StorageError::Config(_))));
        assert!(matches!(open("s3://bucket/p", &[("no_such_option", "1")]), Err(StorageError::Config(_))));
        let s3 = open(
            "s3://bucket/p/q",
            &[("endpoint", "http://127.0.0.1:9"), ("allow_http", "true"), ("region", "us-east-1")],
        );
        assert_eq!(s3.unwrap().prefix.as_ref(), "p/q");
    }
}
