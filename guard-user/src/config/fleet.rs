//! `[fleet]`: the NATS JetStream servers this host shares verdicts through, and how it
//! authenticates to them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[fleet]`: the NATS JetStream servers this host shares verdicts through; none: alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    #[serde(default)]
    pub servers: Vec<String>,
    /// This host's name in the fleet; default: the hostname.
    #[serde(default)]
    pub node: Option<String>,
    /// A NATS credentials file (JWT and NKey seed), for servers that require one.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// Verify the servers with this CA (PEM) instead of the system's roots; TLS is then
    /// required.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that verify clients.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl Fleet {
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    /// Secret files guardd reads: whoever reads one can write verdicts for the whole fleet.
    pub fn secrets(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("credentials", &self.credentials),
            ("tls_key", &self.tls_key),
        ]
        .into_iter()
        .filter_map(|(key, p)| Some((key, p.as_ref()?)))
    }

    /// Files guardd must be able to read at start.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("credentials", &self.credentials),
            ("tls_ca", &self.tls_ca),
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
        ]
        .into_iter()
        .filter_map(|(key, p)| Some((key, p.as_ref()?)))
    }

    /// TLS is asked for: the servers are verified (with `tls_ca` or the system's roots).
    pub fn tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some()
    }
}
