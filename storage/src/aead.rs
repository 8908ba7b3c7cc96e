//! XChaCha20-Poly1305, the one cipher of the store, built as its draft
//! (draft-irtf-cfrg-xchacha-03) defines it: HChaCha20 derives a subkey from
//! the key and the nonce's first 16 bytes, and ChaCha20-Poly1305 (RFC 8439)
//! seals under that subkey with the nonce `0^4 || nonce[16..24]`. HChaCha20
//! is RustCrypto's; ChaCha20-Poly1305 is AWS-LC's (through `aws-lc-rs`,
//! already in the build for TLS), whose assembly opens about twice as fast
//! here as the portable AVX2 code, and opening is what every download does.
//! A test pins the result to RustCrypto's `XChaCha20Poly1305`, so objects
//! sealed by either open with the other.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use chacha20::cipher::consts::U10;
use zeroize::Zeroizing;

/// Key bytes.
pub const KEY: usize = 32;
/// Nonce bytes: random per seal, so they never collide in practice.
pub const NONCE: usize = 24;
/// Tag bytes, after the ciphertext.
pub const TAG: usize = 16;

/// The authenticated data or the tag did not match: nothing opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unopened;

fn subkey(key: &[u8; KEY], nonce: &[u8; NONCE]) -> (LessSafeKey, Nonce) {
    let input: [u8; 16] = nonce[..16].try_into().expect("16 bytes");
    let derived = Zeroizing::new(chacha20::hchacha::<U10>(key.into(), &input.into()));
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &derived[..]).expect("a 32-byte key");
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(&nonce[16..]);
    (LessSafeKey::new(unbound), Nonce::assume_unique_for_key(short))
}

/// `plaintext` sealed: its ciphertext, then the tag.
pub fn seal(key: &[u8; KEY], nonce: &[u8; NONCE], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let (key, nonce) = subkey(key, nonce);
    let mut out = Vec::with_capacity(plaintext.len() + TAG);
    out.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut out).expect("ChaCha20-Poly1305 seals what we store");
    out
}

/// Opens `in_out` (ciphertext, then the tag) where it lies: the plaintext,
/// at its start.
pub fn open_in_place<'a>(
    key: &[u8; KEY],
    nonce: &[u8; NONCE],
    aad: &[u8],
    in_out: &'a mut [u8],
) -> Result<&'a mut [u8], Unopened> {
    let (key, nonce) = subkey(key, nonce);
    key.open_in_place(nonce, Aad::from(aad), in_out).map_err(|_| Unopened)
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    use super::*;

    /// The same bytes as RustCrypto's XChaCha20-Poly1305, both ways, at
    /// lengths around the block size and a payload's.
    #[test]
    fn it_is_xchacha20_poly1305() {
        let (key, nonce, aad) = ([7u8; KEY], [9u8; NONCE], b"aad".as_slice());
        let reference = XChaCha20Poly1305::new(&key.into());
        for len in [0, 1, 63, 64, 65, 1000, 74_000] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let ours = seal(&key, &nonce, aad, &plaintext);
            let theirs = reference.encrypt(&XNonce::from(nonce), Payload { msg: &plaintext, aad }).unwrap();
            assert_eq!(ours, theirs, "length {len}");
            let mut sealed = theirs.clone();
            assert_eq!(open_in_place(&key, &nonce, aad, &mut sealed).unwrap(), plaintext.as_slice());
            let mut other_aad = ours.clone();
            assert_eq!(open_in_place(&key, &nonce, b"other", &mut other_aad), Err(Unopened));
        }
    }
}
