//! What `INFO replication` says about a node: whether it is a primary, how many replicas are
//! connected to it, and how far behind the slowest one is. Read by the connector (`link.rs`)
//! with Sentinel only, where the ACL allows `INFO`.

/// The fields of `INFO replication` the service uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// `role:master`; a node Sentinel named may already have been demoted.
    pub is_primary: bool,
    /// `connected_slaves`.
    pub replicas: i64,
    /// The largest `lag=` of the `slaveN:` lines, in seconds; 0 without replicas.
    pub max_lag_seconds: f64,
}

impl Replication {
    /// Parses the text of `INFO replication`: `key:value` lines, with a line per replica such as
    /// `slave0:ip=10.0.0.2,port=6379,state=online,offset=1234,lag=0`.
    pub fn parse(info: &str) -> Self {
        let mut parsed = Self {
            is_primary: false,
            replicas: 0,
            max_lag_seconds: 0.0,
        };
        for line in info.lines() {
            let Some((key, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            match key {
                "role" => parsed.is_primary = value == "master",
                "connected_slaves" => parsed.replicas = value.parse().unwrap_or(0),
                _ if key.starts_with("slave") && key[5..].bytes().all(|b| b.is_ascii_digit()) => {
                    let lag = value
                        .split(',')
                        .find_map(|field| field.strip_prefix("lag="))
                        .and_then(|lag| lag.parse::<f64>().ok());
                    if let Some(lag) = lag {
                        parsed.max_lag_seconds = parsed.max_lag_seconds.max(lag);
                    }
                }
                _ => {}
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_role_replicas_and_the_largest_lag() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=online,offset=40,lag=3\r\n\
                    master_failover_state:no-failover\r\nmaster_repl_offset:42\r\n";
        assert_eq!(
            Replication::parse(info),
            Replication {
                is_primary: true,
                replicas: 2,
                max_lag_seconds: 3.0
            }
        );
    }

    #[test]
    fn a_replica_is_no_primary() {
        let info = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
                    slave_read_only:1\r\nconnected_slaves:0\r\n";
        let parsed = Replication::parse(info);
        assert!(!parsed.is_primary);
        assert_eq!(parsed.replicas, 0);
        assert_eq!(parsed.max_lag_seconds, 0.0);
    }
}
