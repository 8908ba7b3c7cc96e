//! Master keys and the keyring. A master key is 256 random bits with a key
//! id; it wraps the per-segment data keys and never touches a payload. The
//! keyring holds the current key, which wraps every new data key, and older
//! ones, which still open what they wrapped until a rotation re-wraps it.
//!
//! Text form (the `PAT_STORAGE_KEY` variable and the key file): comma-separated
//! `kid:hex64`, current first. Key material is zeroed on drop and never
//! appears in `Debug` output or errors.

use std::fmt;

use rand::RngCore;
use thiserror::Error;
use zeroize::Zeroizing;

/// Longest key id, bytes.
pub const KID_MAX: usize = 32;

/// Why a keyring's text was refused. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("the keyring is empty: expected `kid:hex64[,kid:hex64...]`")]
    Empty,
    #[error("key {index}: expected `kid:hex64`")]
    Shape { index: usize },
    #[error("key {index}: key id must be 1..={KID_MAX} characters of [A-Za-z0-9_-]")]
    Kid { index: usize },
    #[error("key {index} ({kid}): key must be 64 hex digits (256 bits)")]
    Material { index: usize, kid: String },
    #[error("key id {0} appears twice")]
    DuplicateKid(String),
}

/// One master key: an id and 256 bits, zeroed on drop.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    /// A fresh random key with id `id`.
    pub fn generate(id: &str) -> Result<Self, KeyError> {
        check_kid(id, 0)?;
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Ok(Self { id: id.to_owned(), key })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; crate::aead::KEY] {
        &self.key
    }

    fn parse(text: &str, index: usize) -> Result<Self, KeyError> {
        let (kid, hex) = text.trim().split_once(':').ok_or(KeyError::Shape { index })?;
        check_kid(kid, index)?;
        let material = || KeyError::Material { index, kid: kid.to_owned() };
        if hex.len() != 64 {
            return Err(material());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(material)?, 16).map_err(|_| material())?;
        }
        Ok(Self { id: kid.to_owned(), key })
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.id)
    }
}

fn check_kid(kid: &str, index: usize) -> Result<(), KeyError> {
    let ok = !kid.is_empty()
        && kid.len() <= KID_MAX
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(()).ok_or(KeyError::Kid { index })
}

/// The current master key and the older ones that still open what they wrapped.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// Current first; ids distinct.
    keys: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring of one key.
    pub fn single(key: MasterKey) -> Self {
        Self { keys: vec![key] }
    }

    /// Parses `kid:hex64[,kid:hex64...]`, current first.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let parts: Vec<&str> = text.split(',').filter(|p| !p.trim().is_empty()).collect();
        if parts.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut keys: Vec<MasterKey> = Vec::with_capacity(parts.len());
        for (index, part) in parts.into_iter().enumerate() {
            let key = MasterKey::parse(part, index)?;
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateKid(key.id));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// The text form, current first: secret, zeroed on drop.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(self.keys.len() * (KID_MAX + 66)));
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&key.id);
            text.push(':');
            for byte in key.key.iter() {
                text.push(char::from_digit(u32::from(byte >> 4), 16).expect("a nibble"));
                text.push(char::from_digit(u32::from(byte & 0xf), 16).expect("a nibble"));
            }
        }
        text
    }

    /// The key that wraps new data keys.
    pub fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    /// The key with id `kid`, current or older.
    pub fn get(&self, kid: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == kid)
    }

    /// This keyring with `key` as its new current key and the others kept
    /// behind it, so that what they wrapped still opens during a rotation.
    pub fn rotated_to(&self, key: MasterKey) -> Result<Self, KeyError> {
        if self.get(&key.id).is_some() {
            return Err(KeyError::DuplicateKid(key.id));
        }
        let mut keys = vec![key];
        keys.extend(self.keys.iter().cloned());
        Ok(Self { keys })
    }

    /// Only the current key: what remains once every data key is re-wrapped.
    pub fn current_only(&self) -> Self {
        Self::single(self.current().clone())
    }

    /// The key ids, current first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn text_round_trips_current_first() {
        let text = format!("k2:{HEX},k1:{}", "ff".repeat(32));
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.current().id(), "k2");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert_eq!(ring.to_text().as_str(), text);
    }

    #[test]
    fn bad_text_is_refused_with_its_place() {
        assert_eq!(Keyring::parse(" , ").unwrap_err(), KeyError::Empty);
        assert_eq!(Keyring::parse("nokey").unwrap_err(), KeyError::Shape { index: 0 });
        assert_eq!(Keyring::parse(&format!("k1:{HEX},bad id:{HEX}")).unwrap_err(), KeyError::Kid { index: 1 });
        assert_eq!(Keyring::parse("k1:abcd").unwrap_err(), KeyError::Material { index: 0, kid: "k1".into() });
        assert_eq!(
            Keyring::parse(&format!("k1:{}", "zz".repeat(32))).unwrap_err(),
            KeyError::Material { index: 0, kid: "k1".into() }
        );
        assert_eq!(Keyring::parse(&format!("k1:{HEX},k1:{HEX}")).unwrap_err(), KeyError::DuplicateKid("k1".into()));
    }

    #[test]
    fn debug_and_errors_never_show_key_material() {
        let ring = Keyring::parse(&format!("k1:{HEX}")).unwrap();
        assert!(!format!("{ring:?}").contains("0a0b"));
        let err = Keyring::parse(&format!("k1:{}x", &HEX[..63])).unwrap_err();
        assert!(!err.to_string().contains("0a0b"));
    }

    #[test]
    fn rotation_puts_the_new_key_first_and_refuses_a_reused_id() {
        let ring = Keyring::single(MasterKey::generate("k1").unwrap());
        let rotated = ring.rotated_to(MasterKey::generate("k2").unwrap()).unwrap();
        assert_eq!(rotated.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert_eq!(rotated.current_only().ids().collect::<Vec<_>>(), ["k2"]);
        assert!(matches!(rotated.rotated_to(MasterKey::generate("k1").unwrap()), Err(KeyError::DuplicateKid(_))));
        assert_ne!(MasterKey::generate("a").unwrap().key.as_ref(), MasterKey::generate("a").unwrap().key.as_ref());
    }
}
