//! Shared secrets, and webhook signatures by the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! one `v1,` entry per key so that a receiver can rotate its secret.
//!
//! Secrets are `whsec_<base64 key>` (several, separated by white space, while
//! rotating), as the specification's libraries generate and accept them. A
//! secret without the prefix is taken as raw key bytes, as earlier builds
//! did: its requests also carry the old `X-Trainerd-Signature: sha256=<hex
//! HMAC of the body>`, so receivers can move to the standard headers at
//! their own pace.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const PREFIX: &str = "whsec_";

/// A shared secret as configured (any bytes); `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The signing keys; `Debug` does not print them.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    keys: Vec<Vec<u8>>,
    /// A raw (pre-standard) secret: also send `X-Trainerd-Signature`.
    legacy: bool,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} key(s), ..)", self.keys.len())
    }
}

/// Parses a configured secret: `whsec_...` entries separated by white space,
/// or one raw key (any bytes). The error says what is wrong with which entry.
pub fn parse(secret: &[u8]) -> Result<Keys, String> {
    let text = String::from_utf8_lossy(secret);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the secret is empty".into());
    }
    if !trimmed.starts_with(PREFIX) {
        return Ok(Keys {
            keys: vec![secret.trim_ascii().to_vec()],
            legacy: true,
        });
    }
    let mut keys = Vec::new();
    for (n, entry) in trimmed.split_whitespace().enumerate() {
        let Some(b64) = entry.strip_prefix(PREFIX) else {
            return Err(format!(
                "entry {} does not start with {PREFIX} (a rotation lists only {PREFIX} secrets)",
                n + 1
            ));
        };
        let key = STANDARD
            .decode(b64)
            .map_err(|e| format!("entry {}: {PREFIX}... is not valid base64 ({e})", n + 1))?;
        if key.is_empty() {
            return Err(format!("entry {}: the key is empty", n + 1));
        }
        keys.push(key);
    }
    Ok(Keys {
        keys,
        legacy: false,
    })
}

/// `sha256=<hex>` of `body` under `key`: the pre-standard signature.
pub fn legacy_signature(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(key, &[body])))
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

impl Keys {
    /// The headers that sign one request: `id` stays the same across
    /// retries and restarts (the event's id), `timestamp` is the attempt's
    /// (seconds since the epoch), so a receiver's tolerance window holds.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        let ts = timestamp.to_string();
        let signatures: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let mac = hmac(k, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                format!("v1,{}", STANDARD.encode(mac))
            })
            .collect();
        let mut out = vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts),
            ("webhook-signature", signatures.join(" ")),
        ];
        if self.legacy {
            out.push((
                "X-Trainerd-Signature",
                legacy_signature(&self.keys[0], body),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            legacy_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_standard_signature_signs_id_timestamp_and_body() {
        // The specification's example: secret, id, timestamp, payload, signature.
        let keys = parse(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let h = keys.headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(h[0], ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()));
        assert_eq!(h[1], ("webhook-timestamp", "1614265330".into()));
        assert_eq!(
            h[2],
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into()
            )
        );
        assert_eq!(h.len(), 3, "no legacy header for a whsec_ secret");
    }

    #[test]
    fn rotation_signs_with_every_key_and_bad_entries_are_named() {
        let keys = parse(b" whsec_YWFh\nwhsec_YmJi ").unwrap();
        let h = keys.headers("id", 1, b"{}");
        assert_eq!(h[2].1.matches("v1,").count(), 2, "{h:?}");
        assert!(parse(b"whsec_YWFh plain").unwrap_err().contains("entry 2"));
        assert!(parse(b"whsec_!!").unwrap_err().contains("base64"));
        assert!(parse(b"whsec_").unwrap_err().contains("empty"));
        assert!(parse(b"  ").is_err());
    }

    #[test]
    fn a_raw_secret_is_one_key_and_keeps_the_old_header() {
        let keys = parse(b"s3cret\n").unwrap();
        let h = keys.headers("id", 1, b"{}");
        assert_eq!(h[3].0, "X-Trainerd-Signature");
        assert_eq!(h[3].1, legacy_signature(b"s3cret", b"{}"));
        assert!(!format!("{keys:?}").contains("s3cret"));
    }
}
