//! A local S3-protocol server for tests and benchmarks: `s3s-fs` from the
//! project's toolchain (`.tools/bin`, installed by `scripts/toolchain.sh`),
//! on a free loopback port over a directory of its own, with SigV4
//! credentials. It can be stopped and started again on the same port and
//! data, to test a store that goes away. Killed when dropped.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::Location;

/// Where `scripts/toolchain.sh` puts s3s-fs, relative to the workspace root.
pub const TOOLCHAIN_S3S_FS: &str = ".tools/bin/s3s-fs";
/// The bucket every server has.
pub const BUCKET: &str = "pat";
const ACCESS_KEY: &str = "pat-test-access";
const SECRET_KEY: &str = "pat-test-secret";
const STARTUP: Duration = Duration::from_secs(20);

#[derive(Debug, Error)]
pub enum S3ServerError {
    #[error("s3s-fs not found at {0}; run scripts/toolchain.sh")]
    Missing(PathBuf),
    #[error("starting s3s-fs: {0}")]
    Start(#[from] std::io::Error),
    #[error("s3s-fs did not listen on {0} within {STARTUP:?}")]
    Timeout(SocketAddr),
}

/// A running s3s-fs.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    addr: SocketAddr,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with one empty bucket, [`BUCKET`].
    pub fn start() -> Result<Self, S3ServerError> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join(BUCKET))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        let mut server = Self { child: None, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), root };
        server.resume()?;
        Ok(server)
    }

    /// Kills the server; its data stays for [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, once it was stopped.
    pub fn resume(&mut self) -> Result<(), S3ServerError> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(binary()?)
            .args(["--host", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let began = Instant::now();
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if began.elapsed() > STARTUP {
                self.stop();
                return Err(S3ServerError::Timeout(self.addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store under `prefix` in the bucket, with this server's endpoint and credentials.
    pub fn location(&self, prefix: &str) -> Location {
        Location::Remote { url: format!("s3://{BUCKET}/{prefix}"), options: self.options() }
    }

    /// The builder options naming this server: endpoint, plain HTTP, region, credentials.
    pub fn options(&self) -> BTreeMap<String, String> {
        [
            ("endpoint", self.endpoint()),
            ("allow_http", "true".into()),
            ("region", "us-east-1".into()),
            ("access_key_id", ACCESS_KEY.into()),
            ("secret_access_key", SECRET_KEY.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The directory that holds the bucket's objects as files.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `$S3S_FS` if set, else the toolchain's s3s-fs.
pub fn binary() -> Result<PathBuf, S3ServerError> {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return Ok(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("storage/ has a parent");
    let path = root.join(TOOLCHAIN_S3S_FS);
    match path.is_file() {
        true => Ok(path),
        false => Err(S3ServerError::Missing(path)),
    }
}
