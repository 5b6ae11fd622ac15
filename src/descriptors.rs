//! File descriptors, which client connections are made of: each open connection holds one, so
//! `max_connections` on both listeners needs twice that many, plus the process's own. Without
//! them, `accept` fails (EMFILE) and a connection over the limit waits in the listen queue
//! instead of getting the documented 503. At start-up the soft limit is raised to the hard one
//! (what `ulimit -n` may raise it to without privileges); if even that is too low, each
//! listener's cap is lowered to what fits, with a warning that says what to change.

/// Descriptors kept for everything but client connections: the two listeners, stdio, the
/// Redis and Sentinel connections, the runtime's own, and the socket a refusal is written on.
const RESERVED: u64 = 64;

/// The connections each listener may hold: `max_connections`, or fewer if the descriptor
/// limit cannot be raised far enough for it.
pub fn connections_per_listener(max_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(
                %error,
                "cannot read or raise the file descriptor limit; max_connections is not checked \
                 against it"
            );
            return max_connections;
        }
    };
    let serving = fitting(limit, max_connections);
    if serving < max_connections {
        tracing::warn!(
            limit,
            max_connections,
            serving,
            needed = needed(max_connections),
            "the file descriptor limit (ulimit -n, hard) is too low for max_connections on both \
             listeners: each listener serves at most `serving` connections and answers 503 to \
             more; raise the limit to `needed` or lower max_connections"
        );
    }
    serving
}

/// Descriptors that `max_connections` on both listeners needs.
fn needed(max_connections: usize) -> u64 {
    u64::try_from(max_connections).map_or(u64::MAX, |max| max.saturating_mul(2) + RESERVED)
}

/// The connections per listener that `limit` descriptors allow, at most `max_connections` and
/// at least one (a limit that low fails anyway; the warning says why).
fn fitting(limit: u64, max_connections: usize) -> usize {
    let allowed = usize::try_from(limit.saturating_sub(RESERVED) / 2).unwrap_or(usize::MAX);
    allowed.clamp(1, max_connections.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_lowered_only_when_the_limit_is_too_low() {
        assert_eq!(fitting(1_048_576, 1024), 1024);
        assert_eq!(fitting(needed(1024), 1024), 1024);
        assert_eq!(fitting(needed(1024) - 1, 1024), 1023);
        assert_eq!(fitting(1024, 1024), 480);
        assert_eq!(fitting(200, 1024), 68);
        assert_eq!(fitting(10, 1024), 1);
        assert_eq!(needed(1024), 2112);
    }
}
