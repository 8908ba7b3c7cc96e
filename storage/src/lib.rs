//! Where segment payloads live. A listing's payload, with the provider's
//! signed submission, is sealed under its own data key ([`envelope`]), the
//! data key wrapped by a master key of the [`key::Keyring`], and both kept in
//! an object store ([`store`]): the local filesystem by default, S3 or GCS
//! by URL. Rotation re-wraps data keys; deleting a data key shreds its payload.

mod aead;
pub mod envelope;
pub mod key;
#[cfg(feature = "s3-server")]
pub mod s3_server;
pub mod store;

pub use envelope::Listing;
pub use key::{KeyError, Keyring, MasterKey};
pub use store::{Location, Orphans, PayloadStore, StorageError, Walk};
