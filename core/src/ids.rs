//! Identifiers.
//!
//! Jobs, tasks and assignments are named by 16 random bytes chosen by the
//! host (the core never reads an OS random source), written as five groups
//! of lowercase hex `8-4-4-4-12` (36 characters, the Pilot task-id form).
//! 128 random bits make ids globally unique across coordinators, so records
//! written by different coordinators never collide.
//!
//! Workers are named by a short, printable [`WorkerId`] that an operator
//! chooses (or the coordinator generates for a guest): it is what a worker
//! token is derived from.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::digest::{decode_hex_into, hex_lower};

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// A 16-byte id is written as exactly 36 characters.
    #[error("an id is 36 characters (8-4-4-4-12 hex), got {0}")]
    Length(usize),
    /// The dashes are not at positions 8, 13, 18 and 23.
    #[error("an id has dashes at positions 8, 13, 18 and 23")]
    Dashes,
    /// A character is not a hex digit.
    #[error("invalid hex character {0:?} in id")]
    NotHex(char),
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// The id made of these 16 bytes (random bytes from the host).
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                format_dashed(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_dashed(s).map(Self)
            }
        }
    };
}

random_id!(
    /// A job: one kernel, its parameters and inputs, split into tasks.
    JobId
);
random_id!(
    /// A task: one unit of work of a job, run by several workers.
    TaskId
);
random_id!(
    /// An assignment: one task given to one worker (one replica).
    AssignmentId
);

impl JobId {
    /// The job id of the admission benchmark a coordinator offers right
    /// after its welcome (all zero bytes: no real job is ever named so,
    /// their ids come from 128 random bits). Named once here, so neither
    /// side compares with a literal.
    pub const BENCHMARK: JobId = JobId([0; 16]);
}

/// A worker connection, numbered by the host that accepted it (unique
/// among its open connections). Its own type so it is never confused
/// with an origin, a worker's number or a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// The network origin of a connection as the host sees it (e.g. a hash of
/// the client's /24 or /48): replicas of one task go to workers of
/// distinct origins, so one machine or network cannot outvote the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OriginKey(pub u64);

fn format_dashed(b: &[u8; 16], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let h = hex_lower(b);
    write!(f, "{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn parse_dashed(s: &str) -> Result<[u8; 16], IdParseError> {
    if s.len() != 36 {
        return Err(IdParseError::Length(s.len()));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
        return Err(IdParseError::NotHex(c));
    }
    let bytes = s.as_bytes();
    let mut compact = String::with_capacity(32);
    for (i, &c) in bytes.iter().enumerate() {
        let dash_here = matches!(i, 8 | 13 | 18 | 23);
        if dash_here != (c == b'-') {
            return Err(IdParseError::Dashes);
        }
        if !dash_here {
            compact.push(c as char);
        }
    }
    let mut out = [0u8; 16];
    decode_hex_into(&compact, &mut out).map_err(IdParseError::NotHex)?;
    Ok(out)
}

/// The longest worker id accepted.
pub const MAX_WORKER_ID_LEN: usize = 64;

/// Why a string is not a worker id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerIdError {
    /// Worker ids are 1 to 64 characters long.
    #[error("a worker id is 1 to {MAX_WORKER_ID_LEN} characters, got {0}")]
    Length(usize),
    /// Only ASCII letters, digits, `.`, `_` and `-` are allowed.
    #[error("invalid character {0:?} in worker id (allowed: A-Z a-z 0-9 . _ -)")]
    Character(char),
}

/// The name of a worker: 1–64 characters of `[A-Za-z0-9._-]`.
///
/// Restricted so it is safe in logs, file names, metrics labels and URLs,
/// and so a token derived from it is unambiguous. Shared (`Arc<str>`):
/// the coordinator copies worker ids into many records, and a copy is a
/// reference-count increment, not an allocation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(Arc<str>);

impl Serialize for WorkerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl WorkerId {
    /// Validates `s` as a worker id.
    pub fn new(s: impl Into<String>) -> Result<Self, WorkerIdError> {
        let s = s.into();
        if s.is_empty() || s.len() > MAX_WORKER_ID_LEN {
            return Err(WorkerIdError::Length(s.chars().count()));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(WorkerIdError::Character(c));
        }
        Ok(WorkerId(s.into()))
    }

    /// A guest id for an anonymous worker (e.g. a browser tab), from 16
    /// random bytes chosen by the host: `guest-` + 32 hex characters.
    pub fn guest(random: [u8; 16]) -> Self {
        WorkerId(format!("guest-{}", hex_lower(&random)).into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WorkerId::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({})", self.0)
    }
}

impl FromStr for WorkerId {
    type Err = WorkerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkerId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_form_round_trips() {
        let id = TaskId::from_bytes([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s, "abababab-abab-abab-abab-abababababab");
        assert_eq!(s.parse::<TaskId>(), Ok(id));
        assert_eq!("00000000-0000-0000-0000-000000000000".parse::<JobId>(), Ok(JobId::from_bytes([0; 16])));
    }

    #[test]
    fn bad_ids_are_typed_errors() {
        assert_eq!("abc".parse::<TaskId>(), Err(IdParseError::Length(3)));
        assert_eq!("abababababababababababababababababab".parse::<TaskId>(), Err(IdParseError::Dashes));
        assert_eq!("gbababab-abab-abab-abab-abababababab".parse::<TaskId>(), Err(IdParseError::NotHex('g')));
        // 36 bytes but a multi-byte character: never a panic.
        assert_eq!("éééé-abab-abab-abab-abababababab".parse::<TaskId>(), Err(IdParseError::NotHex('é')));
    }

    #[test]
    fn worker_ids_are_validated() {
        assert!(WorkerId::new("gpu-box_1.eu").is_ok());
        assert_eq!(WorkerId::new(""), Err(WorkerIdError::Length(0)));
        assert_eq!(WorkerId::new("a/b"), Err(WorkerIdError::Character('/')));
        assert!(WorkerId::new("x".repeat(65)).is_err());
        assert_eq!(WorkerId::guest([1; 16]).as_str(), "guest-01010101010101010101010101010101");
    }
}
