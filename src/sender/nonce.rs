//! [`DpopNonces`]: server nonces for DPoP proofs (RFC 9449 §9) that every replica
//! can check without shared state.
//!
//! A nonce is the number of a time slice and an HMAC-SHA256 of that number under a
//! secret the replicas share: `base64url(slice (8 bytes, big-endian) ‖ mac (16
//! bytes))`. A proof's nonce is accepted while its slice is the current one or one of
//! the two before it (or the next one, for clocks a little ahead); an answer to a
//! proof whose nonce is not the current slice's carries the current one in
//! `DPoP-Nonce`, so a busy client never sees its nonce expire. A nonce is not tied to
//! a client: it proves that the proof was made after the server said it, which is
//! what RFC 9449 §9 asks of it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderValue;
use sha2::Sha256;

use crate::error::{AuthError, ConfigError};

/// How often the current nonce changes, by default. A nonce is accepted for three
/// rotations.
pub const DEFAULT_NONCE_ROTATION: Duration = Duration::from_secs(60);

/// The slices before the current one whose nonces are still accepted.
const SLICES_BEHIND: u64 = 2;

/// The shortest secret accepted, in bytes.
const MIN_SECRET: usize = 32;

/// Bytes of the MAC kept in a nonce.
const MAC_LEN: usize = 16;

/// Server nonces for DPoP proofs (RFC 9449 §9); see the module docs. Give every
/// replica the same secret. Cheap to clone.
#[derive(Clone)]
pub struct DpopNonces {
    key: Hmac<Sha256>,
    rotation: Duration,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces made with `secret` (at least 32 random bytes, the same on every
    /// replica), rotating every [`DEFAULT_NONCE_ROTATION`].
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET {
            return Err(ConfigError::new(format!(
                "the DPoP nonce secret has {} bytes; it needs at least {MIN_SECRET} random bytes",
                secret.len()
            )));
        }
        let key = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| ConfigError::new("the DPoP nonce secret cannot key HMAC-SHA256"))?;
        Ok(Self {
            key,
            rotation: DEFAULT_NONCE_ROTATION,
        })
    }

    /// Nonces made with 32 random bytes from the operating system: for one replica
    /// (replicas need one secret, [`DpopNonces::new`]).
    pub fn random() -> Result<Self, ConfigError> {
        let mut secret = [0u8; MIN_SECRET];
        getrandom::getrandom(&mut secret).map_err(|e| {
            ConfigError::new(format!("no random bytes for the DPoP nonce secret: {e}"))
        })?;
        Self::new(secret)
    }

    /// How often the current nonce changes (at least a second); a nonce is accepted
    /// for three rotations.
    pub fn rotation(mut self, every: Duration) -> Self {
        self.rotation = every.max(Duration::from_secs(1));
        self
    }

    /// The current nonce.
    pub fn current(&self) -> String {
        self.nonce(self.slice_at(SystemTime::now()))
    }

    fn slice_at(&self, now: SystemTime) -> u64 {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        since.as_secs() / self.rotation.as_secs().max(1)
    }

    fn mac(&self, slice: u64) -> [u8; 32] {
        let mut mac = self.key.clone();
        mac.update(b"mcp-gatekeeper DPoP nonce\0");
        mac.update(&slice.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    fn nonce(&self, slice: u64) -> String {
        let mut bytes = [0u8; 8 + MAC_LEN];
        bytes[..8].copy_from_slice(&slice.to_be_bytes());
        bytes[8..].copy_from_slice(&self.mac(slice)[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The slice a nonce of ours names, if it is one (its MAC checked in constant
    /// time).
    fn slice_of(&self, nonce: &str) -> Option<u64> {
        let bytes = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let (slice, tag) = bytes.split_at_checked(8)?;
        let slice = u64::from_be_bytes(slice.try_into().ok()?);
        let mut mac = self.key.clone();
        mac.update(b"mcp-gatekeeper DPoP nonce\0");
        mac.update(&slice.to_be_bytes());
        (tag.len() == MAC_LEN && mac.verify_truncated_left(tag).is_ok()).then_some(slice)
    }

    /// Checks a proof's `nonce`: `Ok(None)` for the current one, `Ok(Some(current))`
    /// for an older one still accepted (the answer carries the current one), and a
    /// `use_dpop_nonce` refusal with the current one otherwise.
    pub(crate) fn check(&self, nonce: Option<&str>) -> Result<Option<HeaderValue>, AuthError> {
        self.check_at(nonce, SystemTime::now())
    }

    fn check_at(
        &self,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let current = self.slice_at(now);
        let fresh = || HeaderValue::from_str(&self.nonce(current)).ok();
        let refuse = |why: &'static str| AuthError::use_dpop_nonce(self.nonce(current), why);
        let Some(nonce) = nonce else {
            return Err(refuse(
                "this server requires a nonce in DPoP proofs: retry with the DPoP-Nonce it sent",
            ));
        };
        match self.slice_of(nonce) {
            Some(slice) if slice == current => Ok(None),
            Some(slice) if slice + SLICES_BEHIND >= current && slice <= current + 1 => Ok(fresh()),
            Some(_) => Err(refuse(
                "the DPoP proof's nonce has expired: retry with the DPoP-Nonce sent now",
            )),
            None => Err(refuse(
                "the DPoP proof's nonce is not one this server gave: retry with the DPoP-Nonce sent now",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn refusal(result: Result<Option<HeaderValue>, AuthError>) -> AuthError {
        match result {
            Err(error) => error,
            Ok(renewal) => panic!("expected use_dpop_nonce, got {renewal:?}"),
        }
    }

    #[test]
    fn a_nonce_is_accepted_for_three_rotations_and_renewed_after_the_first() {
        let nonces = DpopNonces::new([1u8; 32]).map(|n| n.rotation(Duration::from_secs(60)));
        let Ok(nonces) = nonces else {
            panic!("a 32-byte secret is enough");
        };
        let given = nonces.nonce(nonces.slice_at(at(6_000)));
        assert!(matches!(nonces.check_at(Some(&given), at(6_059)), Ok(None)));
        for later in [6_060, 6_179] {
            let renewed = nonces.check_at(Some(&given), at(later));
            let Ok(Some(current)) = renewed else {
                panic!("{later}: {renewed:?}");
            };
            assert_eq!(current, nonces.nonce(nonces.slice_at(at(later))).as_str());
        }
        let expired = refusal(nonces.check_at(Some(&given), at(6_180)));
        assert!(expired.description().contains("expired"), "{expired}");
        assert!(expired.dpop_nonce().is_some());
        // A replica with the same secret accepts it; one with another refuses it.
        let Ok(replica) = DpopNonces::new([1u8; 32]) else {
            panic!("secret");
        };
        assert!(matches!(
            replica.check_at(Some(&given), at(6_001)),
            Ok(None)
        ));
        let Ok(stranger) = DpopNonces::new([2u8; 32]) else {
            panic!("secret");
        };
        let foreign = refusal(stranger.check_at(Some(&given), at(6_001)));
        assert!(foreign.description().contains("not one"), "{foreign}");
    }

    #[test]
    fn a_missing_forged_or_truncated_nonce_gets_use_dpop_nonce_with_the_current_one() {
        let Ok(nonces) = DpopNonces::new([3u8; 32]) else {
            panic!("secret");
        };
        let now = at(1_000_000);
        let current = nonces.nonce(nonces.slice_at(now));
        let mut forged = current.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap_or_default();
        for sent in [
            None,
            Some("nonce"),
            Some(""),
            Some(&current[..20]),
            Some(forged.as_str()),
        ] {
            let error = refusal(nonces.check_at(sent, now));
            assert_eq!(error.error_code(), Some("use_dpop_nonce"), "{sent:?}");
            assert_eq!(error.dpop_nonce(), Some(current.as_str()), "{sent:?}");
        }
    }

    #[test]
    fn a_short_secret_is_a_configuration_error() {
        let error = DpopNonces::new([0u8; 16]).map(|_| ()).err();
        assert!(error.is_some_and(|e| e.message().contains("32")));
    }
}
