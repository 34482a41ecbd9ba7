//! Serde for `u128` amounts: a decimal string in human-readable formats
//! (TOML and JSON cannot hold 128-bit integers), the native integer in
//! binary ones (postcard).

use serde::{Deserialize, Deserializer, Serializer};

/// Serializes an amount.
pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.collect_str(v)
    } else {
        s.serialize_u128(*v)
    }
}

/// Deserializes an amount (a string of digits, or an integer).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    if d.is_human_readable() {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Int(u64),
        }
        match Either::deserialize(d)? {
            Either::Text(t) => t.trim().replace('_', "").parse().map_err(serde::de::Error::custom),
            Either::Int(i) => Ok(u128::from(i)),
        }
    } else {
        u128::deserialize(d)
    }
}
