//! List cursors: where a listing resumes, and the signed, opaque text clients carry between
//! pages.
//!
//! On one node a cursor holds the SCAN position plus the names SCAN returned that did not fit
//! on the previous page (SCAN's COUNT is a hint, and a reply may overshoot it by a few keys).
//! On a cluster it holds a hash slot and the last name returned from it
//! ([architecture.md](../docs/architecture.md#listing-a-cluster)). Since such names come back
//! or steer the next page, a cursor a client made up could make the service return whatever
//! names it likes, as often as it likes. So every cursor carries an HMAC-SHA256 tag under a key
//! the replicas share (`cursor_key_file`), and a cursor without a valid tag is refused: the
//! service only resumes listings it started.

use std::collections::VecDeque;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::domain::Name;

/// The tag is HMAC-SHA256 cut to 128 bits: forging one still takes 2^128 tries.
const TAG_BYTES: usize = 16;

/// Bumped when a payload's layout changes, so that old cursors are refused cleanly.
const SCAN_VERSION: &str = "v2";
const SLOTS_VERSION: &str = "s1";

/// Redis Cluster's hash slots, 0 to 16383.
pub const SLOTS: u16 = 16384;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// One node (a URL or Sentinel's primary): SCAN's position and the names carried over.
    Scan {
        scan: ScanPosition,
        pending: VecDeque<Name>,
    },
    /// A cluster: every name in slots below `slot` was listed, and in `slot` every name up to
    /// `after`, in byte order.
    Slots { slot: u16, after: Option<Name> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanPosition {
    Start,
    At(u64),
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not one this service returned")]
pub struct CursorError;

impl Cursor {
    /// Where every listing starts, whatever the topology.
    pub fn start() -> Self {
        Self::Scan {
            scan: ScanPosition::Start,
            pending: VecDeque::new(),
        }
    }
}

/// Signs and checks cursors.
#[derive(Clone)]
pub struct CursorKey(Hmac<Sha256>);

impl CursorKey {
    /// The configured key, or, without one, a random key for this process alone (a cursor from
    /// another replica is then refused). Fails only without the OS's random source.
    pub fn new(configured: Option<&Secret>) -> Result<Self, getrandom::Error> {
        let mut random = [0; 32];
        let key = match configured {
            Some(secret) => secret.expose().as_bytes(),
            None => {
                getrandom::fill(&mut random)?;
                &random[..]
            }
        };
        // HMAC takes a key of any length; the error case does not exist for it.
        Ok(Self(
            Hmac::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key")),
        ))
    }

    /// Opaque to clients: URL-safe base64 of `v2:<scan position>:<pending names>` (one node) or
    /// `s1:<slot>:<last name>` (a cluster), and its tag.
    pub fn encode(&self, cursor: &Cursor) -> String {
        let payload = match cursor {
            Cursor::Scan { scan, pending } => {
                let position = match scan {
                    ScanPosition::Start => "0".to_owned(),
                    ScanPosition::At(at) => at.to_string(),
                    ScanPosition::Finished => "end".to_owned(),
                };
                let pending: Vec<&str> = pending.iter().map(Name::as_str).collect();
                format!("{SCAN_VERSION}:{position}:{}", pending.join(","))
            }
            Cursor::Slots { slot, after } => format!(
                "{SLOTS_VERSION}:{slot}:{}",
                after.as_ref().map_or("", Name::as_str)
            ),
        };
        let mut bytes = payload.into_bytes();
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(&self, raw: &str) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| CursorError)?;
        let split = bytes.len().checked_sub(TAG_BYTES).ok_or(CursorError)?;
        let (payload, tag) = bytes.split_at(split);
        let mut mac = self.0.clone();
        mac.update(payload);
        // Constant time: the comparison must not tell a forger how much of a tag was right.
        mac.verify_truncated_left(tag).map_err(|_| CursorError)?;
        parse(payload)
    }

    fn tag(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }
}

/// The payload of a cursor whose tag was checked: this service wrote it, but it is parsed as
/// carefully as any input.
fn parse(payload: &[u8]) -> Result<Cursor, CursorError> {
    let text = std::str::from_utf8(payload).map_err(|_| CursorError)?;
    let mut parts = text.splitn(3, ':');
    let (Some(version), Some(position), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(CursorError);
    };
    let name = |raw: &str| Name::parse(raw).map_err(|_| CursorError);
    match version {
        SCAN_VERSION => {
            let scan = match position {
                "0" => ScanPosition::Start,
                "end" => ScanPosition::Finished,
                at => ScanPosition::At(at.parse().map_err(|_| CursorError)?),
            };
            let pending = rest
                .split(',')
                .filter(|raw| !raw.is_empty())
                .map(name)
                .collect::<Result<_, _>>()?;
            Ok(Cursor::Scan { scan, pending })
        }
        SLOTS_VERSION => {
            let slot = position
                .parse::<u16>()
                .ok()
                .filter(|slot| *slot < SLOTS)
                .ok_or(CursorError)?;
            let after = match rest {
                "" => None,
                raw => Some(name(raw)?),
            };
            Ok(Cursor::Slots { slot, after })
        }
        _ => Err(CursorError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> VecDeque<Name> {
        list.iter().map(|name| Name::parse(name).unwrap()).collect()
    }

    fn key(text: &str) -> CursorKey {
        CursorKey::new(Some(&Secret::new(text))).unwrap()
    }

    #[test]
    fn cursors_round_trip() {
        let key = key("a key of at least thirty-two bytes!");
        for cursor in [
            Cursor::start(),
            Cursor::Scan {
                scan: ScanPosition::At(17),
                pending: VecDeque::new(),
            },
            Cursor::Scan {
                scan: ScanPosition::At(u64::MAX),
                pending: names(&["a", "b.c"]),
            },
            Cursor::Scan {
                scan: ScanPosition::Finished,
                pending: names(&["left-over"]),
            },
            Cursor::Slots {
                slot: 0,
                after: None,
            },
            Cursor::Slots {
                slot: SLOTS - 1,
                after: Some(names(&["b.c"])[0].clone()),
            },
        ] {
            assert_eq!(key.decode(&key.encode(&cursor)), Ok(cursor));
        }
    }

    #[test]
    fn replicas_sharing_a_key_accept_each_others_cursors_and_no_one_else_does() {
        let cursor = Cursor::Scan {
            scan: ScanPosition::At(5),
            pending: names(&["x"]),
        };
        let issued = key("the shared key of the deployment.").encode(&cursor);
        assert_eq!(
            key("the shared key of the deployment.").decode(&issued),
            Ok(cursor.clone())
        );
        assert_eq!(
            key("another deployment's shared key..").decode(&issued),
            Err(CursorError)
        );
        let random = CursorKey::new(None).unwrap();
        let other = CursorKey::new(None).unwrap();
        assert_eq!(other.decode(&random.encode(&cursor)), Err(CursorError));
    }

    #[test]
    fn forged_or_altered_cursors_are_refused() {
        let key = key("a key of at least thirty-two bytes!");
        let issued = URL_SAFE_NO_PAD
            .decode(key.encode(&Cursor::Scan {
                scan: ScanPosition::At(3),
                pending: names(&["a"]),
            }))
            .unwrap();
        let mut altered = issued.clone();
        altered[3] = b'4'; // the scan position
        let mut amplified = b"v2:3:".to_vec();
        amplified.extend_from_slice(&b"a,".repeat(1000));
        amplified.extend_from_slice(&issued[issued.len() - TAG_BYTES..]);
        for bad in [
            String::new(),
            "!!!".to_owned(),
            URL_SAFE_NO_PAD.encode("v2:0:"), // unsigned
            URL_SAFE_NO_PAD.encode(&issued[..issued.len() - 1]),
            URL_SAFE_NO_PAD.encode(&altered),
            URL_SAFE_NO_PAD.encode(&amplified),
        ] {
            assert_eq!(key.decode(&bad), Err(CursorError), "{bad:?}");
        }
    }

    #[test]
    fn signed_payloads_are_still_parsed_strictly() {
        for bad in [
            "v1:0:",
            "v2:x:",
            "v2:-1:",
            "v2:1:a b",
            "v2:17",
            "s1:16384:",
            "s1:-1:",
            "s1:3:a,b",
            "s1:3",
            "s2:3:",
        ] {
            assert_eq!(parse(bad.as_bytes()), Err(CursorError), "{bad:?}");
        }
    }
}
