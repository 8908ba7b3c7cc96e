//! The payload store as the binary opens it, and `pat-market storage`.
//!
//! The master keyring comes from `PAT_STORAGE_KEY` if set, else from the key
//! file (`storage.key_file`, default `storage.key` in the data directory).
//! A data directory without either gets a new key file (mode 0600) at its
//! first start, as devnet's does; its contents are never printed.
//! `storage rotate-key` re-wraps every data key under a new master key and
//! leaves the key file holding only that key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use pat_storage::{Keyring, Location, MasterKey, PayloadStore};

/// Environment variable holding the master keyring, `kid:hex64[,kid:hex64...]`.
pub const KEY_VAR: &str = "PAT_STORAGE_KEY";
/// The key file's name in the data directory when the config names none.
const DEFAULT_KEY_FILE: &str = "storage.key";

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Re-wrap every data key under a new master key, then drop the old keys
    /// from the key file. Payloads are not rewritten. Stop the engine first.
    RotateKey {
        /// Engine config (TOML): its [storage] section says where the store is.
        #[arg(long, default_value = "config/default.toml")]
        config: PathBuf,
        /// Data directory (the local store and the key file live there).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Id of the new key (default: `k` and the Unix time).
        #[arg(long)]
        kid: Option<String>,
    },
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::RotateKey { config, data_dir, kid } => {
            let cfg = crate::serve::load_config(config)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(rotate(&cfg.storage, data_dir, kid.as_deref()))
        }
    }
}

/// Where the store of this config and data directory is.
fn location(cfg: &pat_config::StorageParams, data_dir: &Path) -> Location {
    match &cfg.url {
        Some(url) => Location::Remote { url: url.clone(), options: cfg.options.clone() },
        None => Location::Local(data_dir.join("store")),
    }
}

fn key_file(cfg: &pat_config::StorageParams, data_dir: &Path) -> PathBuf {
    data_dir.join(cfg.key_file.as_deref().unwrap_or(Path::new(DEFAULT_KEY_FILE)))
}

/// Opens the payload store for `serve`. With no keyring yet, a new key goes
/// into the key file, but only over an empty store: a store that holds
/// objects and no key means the wrong data directory or a lost key, and a
/// new key (with the sweep that follows) would make its objects orphans.
pub async fn open(cfg: &pat_config::StorageParams, data_dir: &Path) -> anyhow::Result<PayloadStore> {
    let location = location(cfg, data_dir);
    let opened = |ring| PayloadStore::open(&location, ring).context("opening the payload store");
    let store = match std::env::var_os(KEY_VAR) {
        Some(text) => {
            let text =
                zeroize::Zeroizing::new(text.into_string().map_err(|_| anyhow::anyhow!("{KEY_VAR} is not UTF-8"))?);
            if text.trim().is_empty() {
                bail!("{KEY_VAR} is set but empty: set it to kid:hex64[,...], or unset it to use the key file");
            }
            opened(Keyring::parse(&text).context(KEY_VAR)?)?
        }
        None => {
            let path = key_file(cfg, data_dir);
            match path.exists() {
                true => opened(read_key_file(&path)?)?,
                false => {
                    let store = opened(Keyring::single(MasterKey::generate(&new_kid())?))?;
                    if !store.is_empty().await? {
                        bail!(
                            "the payload store holds objects but {} does not exist: set {KEY_VAR} or storage.key_file to its keyring",
                            path.display()
                        );
                    }
                    write_key_file(&path, store.keyring())?;
                    eprintln!(
                        "generated a storage master key into {} (mode 0600): back it up, payloads cannot be read without it",
                        path.display()
                    );
                    store
                }
            }
        }
    };
    store.claim_owner(&owner_id(data_dir)?).await?;
    let kid = store.keyring().current().id();
    match &location {
        Location::Local(dir) => eprintln!("payload store: {} (sealed, key {kid})", dir.display()),
        Location::Remote { url, .. } => eprintln!("payload store: {url} (sealed, key {kid})"),
    }
    Ok(store)
}

/// The data directory's id (`DATA/store.owner`), made at its first start.
fn owner_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("store.owner");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_owned());
    }
    let id = format!("{:032x}", rand::random::<u128>());
    write_durably(&path, id.as_bytes())?;
    Ok(id)
}

fn new_kid() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("k{secs}")
}

fn read_key_file(path: &Path) -> anyhow::Result<Keyring> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).with_context(|| path.display().to_string())?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!("{} is readable by others (mode {:o}): chmod 600 it", path.display(), mode & 0o777);
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| path.display().to_string())?);
    Keyring::parse(&text).with_context(|| path.display().to_string())
}

/// Writes the keyring to `path`.
fn write_key_file(path: &Path, ring: &Keyring) -> anyhow::Result<()> {
    write_durably(path, ring.to_text().as_bytes())
}

/// Writes `bytes` to `path` with mode 0600, atomically (a temporary file
/// renamed over it) and durably (the file and its directory fsynced).
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover temporary file would keep its own mode: start from none.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).context(tmp.display().to_string()),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| tmp.display().to_string())?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

async fn rotate(cfg: &pat_config::StorageParams, data_dir: &Path, kid: Option<&str>) -> anyhow::Result<ExitCode> {
    if std::env::var_os(KEY_VAR).is_some() {
        bail!("{KEY_VAR} is set: rotate-key rewrites the key file; unset it, rotate, then set it from the new file");
    }
    let path = key_file(cfg, data_dir);
    let old = read_key_file(&path)?;
    let new = MasterKey::generate(&kid.map_or_else(new_kid, str::to_owned))?;
    let new_id = new.id().to_owned();
    let during = old.rotated_to(new)?;
    // The file holds both keys while re-wrapping: a crash midway leaves every payload readable.
    write_key_file(&path, &during)?;
    let store = PayloadStore::open(&location(cfg, data_dir), during.clone())?;
    let walk = store.rewrap_all().await.context("re-wrapping data keys (run it again to finish)")?;
    write_key_file(&path, &during.current_only())?;
    println!(
        "re-wrapped {} of {} data keys under {new_id}; {} now holds only {new_id} (retired: {})",
        walk.changed,
        walk.examined,
        path.display(),
        old.ids().collect::<Vec<_>>().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use pat_engine::testing::{self, T0};

    use super::*;

    /// A first start writes a 0600 key file; a rotation re-wraps what it
    /// sealed and leaves the file holding only the new key, which opens it.
    #[tokio::test]
    async fn first_start_writes_the_key_file_and_rotation_replaces_it() {
        assert!(std::env::var_os(KEY_VAR).is_none(), "the test reads the key file, not {KEY_VAR}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = pat_config::StorageParams::default();
        let store = open(&cfg, dir.path()).await.unwrap();
        let path = dir.path().join(DEFAULT_KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let old_kid = store.keyring().current().id().to_owned();
        let payload = testing::payload_salted(3, 1);
        let signed =
            testing::signed_segment(&testing::PROVIDER_KEY, "PURCHASE_INTENT", "7D", 8000, T0, T0, 2, &payload);
        store.put(&signed).await.unwrap();
        // Opening again reads the same key.
        assert_eq!(open(&cfg, dir.path()).await.unwrap().get(&signed.submission.payloadHash).await.unwrap(), signed);

        rotate(&cfg, dir.path(), Some("k-new")).await.unwrap();
        let ring = read_key_file(&path).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k-new"]);
        assert_eq!(open(&cfg, dir.path()).await.unwrap().get(&signed.submission.payloadHash).await.unwrap(), signed);
        assert!(
            matches!(
                store.get(&signed.submission.payloadHash).await,
                Err(pat_storage::StorageError::UnknownKey { kid, .. }) if kid == "k-new"
            ),
            "the old key ({old_kid}) opens nothing re-wrapped"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(open(&cfg, dir.path()).await.unwrap_err().to_string().contains("chmod 600"));
        // A store with objects and no key file: no new key over it.
        std::fs::remove_file(&path).unwrap();
        let refused = open(&cfg, dir.path()).await.unwrap_err().to_string();
        assert!(refused.contains("holds objects"), "{refused}");
        assert!(!path.exists());
    }
}
