//! Card-number protection (DESIGN §8): when `[ingest.card_hash]` is enabled, the configured
//! fields of every event are replaced by a keyed hash before decoding hands the event to anything
//! else, so detectors, alerts, metrics, logs and reports only ever see tokens.
//!
//! The token is `h` + the first 128 bits of HMAC-SHA256(key, value) in hex: stable for a key
//! (the same card always gets the same token, so detection works across days and restarts),
//! unlinkable without it. The key comes from a file or an environment variable, never from the
//! TOML; it must hold at least 16 bytes.
//!
//! **What the dead-letter topic and the rejects file carry when hashing is on.** A bad message
//! may itself be the only copy of a raw card number, and forwarding it unchanged would make the
//! dead-letter topic a side channel. So with hashing on: a payload that parses as a JSON object
//! is forwarded with the configured fields hashed (everything else unchanged, so it can still be
//! diagnosed and replayed); any other payload (not JSON, not an object, not UTF-8) is withheld
//! and replaced by `{"withheld": …, "bytes": N}`; the message key is hashed like a card id; a
//! CSV row in the rejects file is withheld likewise (its file and line number say where it is).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use swipeguard_detectors::{CardId, Transaction};

use crate::config::{CardHashConfig, ConfigError};

/// Shortest accepted key, bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Event fields that can be hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    CardId,
    AccountId,
    TerminalId,
    MerchantId,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        match name {
            "card_id" => Some(Field::CardId),
            "account_id" => Some(Field::AccountId),
            "terminal_id" => Some(Field::TerminalId),
            "merchant_id" => Some(Field::MerchantId),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Field::CardId => "card_id",
            Field::AccountId => "account_id",
            Field::TerminalId => "terminal_id",
            Field::MerchantId => "merchant_id",
        }
    }
}

/// The keyed hash. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct CardHasher {
    key: Arc<[u8]>,
    fields: Vec<Field>,
}

impl std::fmt::Debug for CardHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardHasher")
            .field("key", &"********")
            .field("fields", &self.fields)
            .finish()
    }
}

impl PartialEq for CardHasher {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.fields == other.fields
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl CardHasher {
    /// Builds the hasher from configuration; `env` resolves `key_env`. `None` when disabled.
    pub fn from_config(
        cfg: &CardHashConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<CardHasher>, ConfigError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let key: Vec<u8> = match (&cfg.key_file, &cfg.key_env) {
            (Some(path), _) => {
                let mut bytes = std::fs::read(path).map_err(|e| {
                    invalid(
                        "ingest.card_hash.key_file",
                        format!("cannot read {path}: {e}"),
                    )
                })?;
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                bytes
            }
            (None, Some(var)) => env(var)
                .ok_or_else(|| {
                    invalid(
                        "ingest.card_hash.key_env",
                        format!("the environment variable {var} is not set"),
                    )
                })?
                .trim_end()
                .as_bytes()
                .to_vec(),
            (None, None) => {
                return Err(invalid(
                    "ingest.card_hash",
                    "enabled, but neither key_file nor key_env names the key",
                ));
            }
        };
        if key.len() < MIN_KEY_BYTES {
            let which = if cfg.key_file.is_some() {
                "ingest.card_hash.key_file"
            } else {
                "ingest.card_hash.key_env"
            };
            return Err(invalid(
                which,
                format!("the key must hold at least {MIN_KEY_BYTES} bytes"),
            ));
        }
        let mut fields = Vec::new();
        for name in &cfg.fields {
            let f = Field::parse(name).ok_or_else(|| {
                invalid(
                    "ingest.card_hash.fields",
                    format!("{name:?} is not one of card_id, account_id, terminal_id, merchant_id"),
                )
            })?;
            fields.push(f);
        }
        Ok(Some(CardHasher {
            key: key.into(),
            fields,
        }))
    }

    /// The token of one value.
    pub fn token(&self, value: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return "h".into();
        };
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(33);
        out.push('h');
        for b in &digest[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Replaces the configured fields of a decoded event by their tokens.
    pub fn protect(&self, tx: &mut Transaction) {
        for f in &self.fields {
            match f {
                Field::CardId => tx.card_id = CardId::new(self.token(tx.card_id.as_str())),
                Field::AccountId => {
                    if let Some(v) = &tx.account_id {
                        tx.account_id = Some(self.token(v).into());
                    }
                }
                Field::TerminalId => {
                    if let Some(v) = &tx.terminal_id {
                        tx.terminal_id = Some(self.token(v).into());
                    }
                }
                Field::MerchantId => tx.merchant_id = self.token(&tx.merchant_id).into(),
            }
        }
    }

    /// What may leave the daemon or replay for a message that was not detected (module doc).
    pub fn redact_payload(&self, payload: &[u8]) -> Vec<u8> {
        let parsed = serde_json::from_slice::<serde_json::Value>(payload).ok();
        match parsed {
            Some(serde_json::Value::Object(mut object)) => {
                for f in &self.fields {
                    let raw = match object.get(f.name()) {
                        Some(serde_json::Value::String(s)) => Some(s.clone()),
                        None | Some(serde_json::Value::Null) => None,
                        Some(other) => Some(other.to_string()),
                    };
                    if let Some(raw) = raw {
                        object.insert(
                            f.name().to_string(),
                            serde_json::Value::String(self.token(&raw)),
                        );
                    }
                }
                serde_json::to_vec(&object).unwrap_or_default()
            }
            _ => withheld(payload.len()),
        }
    }

    /// The key of a forwarded message: hashed like a card id.
    pub fn redact_key(&self, key: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(key) {
            Ok(k) => self.token(k).into_bytes(),
            Err(_) => self.token(&String::from_utf8_lossy(key)).into_bytes(),
        }
    }
}

/// The stand-in for a payload that cannot be redacted field by field.
pub fn withheld(len: usize) -> Vec<u8> {
    format!(r#"{{"withheld":"not a JSON object, so it may hold raw card numbers; card hashing is on","bytes":{len}}}"#)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(fields: &[&str]) -> CardHasher {
        let cfg = CardHashConfig {
            enabled: true,
            key_file: None,
            key_env: Some("K".into()),
            fields: fields.iter().map(|s| s.to_string()).collect(),
        };
        CardHasher::from_config(&cfg, &|_| Some("0123456789abcdef0123".into()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn by_default_the_card_and_the_person_number_are_hashed() {
        let defaults = CardHashConfig::default().fields;
        let names: Vec<&str> = defaults.iter().map(String::as_str).collect();
        let h = hasher(&names);
        let line = br#"{"event_id":"e","ts":1795399200000,"card_id":"6222021234567890123","account_id":"310101199001011234","amount_minor":1,"merchant_id":"m","outcome":"approved"}"#;
        let tx = crate::codec::decode_event(line, &crate::codec::DecodeLimits::default()).unwrap();
        let mut protected = tx.clone();
        h.protect(&mut protected);
        assert_eq!(protected.card_id.as_str(), h.token("6222021234567890123"));
        assert_eq!(
            protected.account_id.as_deref(),
            Some(h.token("310101199001011234").as_str())
        );
        let redacted = String::from_utf8(h.redact_payload(line)).unwrap();
        assert!(
            !redacted.contains("310101199001011234") && !redacted.contains("6222021234567890123")
        );
    }

    #[test]
    fn tokens_are_stable_keyed_and_short() {
        let h = hasher(&["card_id"]);
        let t = h.token("6222021234567890123");
        assert_eq!(t, h.token("6222021234567890123"));
        assert_eq!(t.len(), 33);
        assert!(t.starts_with('h'));
        assert_ne!(t, h.token("6222021234567890124"));
        let other = CardHashConfig {
            enabled: true,
            key_env: Some("K".into()),
            ..CardHashConfig::default()
        };
        let h2 = CardHasher::from_config(&other, &|_| Some("another key, long enough".into()))
            .unwrap()
            .unwrap();
        assert_ne!(t, h2.token("6222021234567890123"));
        assert!(!format!("{h:?}").contains("0123456789"));
    }

    #[test]
    fn missing_or_short_keys_refuse_to_start_and_name_the_key() {
        let base = CardHashConfig {
            enabled: true,
            ..CardHashConfig::default()
        };
        let err = |cfg: &CardHashConfig, env: Option<&str>| {
            let env = env.map(String::from);
            CardHasher::from_config(cfg, &|_| env.clone())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&base, None).starts_with("ingest.card_hash: enabled, but neither"));
        let env_cfg = CardHashConfig {
            key_env: Some("SG_KEY".into()),
            ..base.clone()
        };
        assert_eq!(
            err(&env_cfg, None),
            "ingest.card_hash.key_env: the environment variable SG_KEY is not set"
        );
        assert_eq!(
            err(&env_cfg, Some("short")),
            "ingest.card_hash.key_env: the key must hold at least 16 bytes"
        );
        let file_cfg = CardHashConfig {
            key_file: Some("/nonexistent/key".into()),
            ..base.clone()
        };
        assert!(err(&file_cfg, None)
            .starts_with("ingest.card_hash.key_file: cannot read /nonexistent/key"));
        let fields = CardHashConfig {
            fields: vec!["pan".into()],
            ..env_cfg
        };
        assert!(err(&fields, Some("0123456789abcdef")).starts_with("ingest.card_hash.fields:"));
    }

    #[test]
    fn redaction_hashes_fields_and_withholds_what_it_cannot_read() {
        let h = hasher(&["card_id", "account_id"]);
        let out =
            h.redact_payload(br#"{"card_id":"6222021234567890123","account_id":42,"ts":"noon"}"#);
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("6222021234567890123") && !text.contains("42,"),
            "{text}"
        );
        assert!(text.contains(&h.token("6222021234567890123")));
        assert!(text.contains(r#""ts":"noon""#));
        let out =
            String::from_utf8(h.redact_payload(b"card 6222021234567890123 declined")).unwrap();
        assert!(out.contains("withheld") && !out.contains("6222"), "{out}");
        assert_eq!(
            h.redact_key(b"6222021234567890123"),
            h.token("6222021234567890123").into_bytes()
        );
    }
}
