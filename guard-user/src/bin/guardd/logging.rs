//! Where guardd's log goes, in every mode:
//! - `--foreground`: stderr, in colour only on a terminal, without timestamps under journald
//!   (which adds its own);
//! - in the background: `$GUARD_LOG_FILE` when set, else syslog through `/dev/log` (journald
//!   serves it too), else the file `/var/log/guardd.log`.
//!
//! `RUST_LOG` filters (default `info`).

use std::{
    io::{self, IsTerminal, Write},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    sync::Arc,
};

use tracing::{Level, Metadata};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// The syslog socket.
const SYSLOG_SOCKET: &str = "/dev/log";
/// The log file in the background when there is no syslog.
pub const FALLBACK_LOG_FILE: &str = "/var/log/guardd.log";
/// Overrides where a background guardd logs.
const LOG_FILE_ENV: &str = "GUARD_LOG_FILE";

/// Sets up logging; in the background, the returned text says where the log goes.
pub fn init(foreground: bool) -> io::Result<Option<String>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if foreground {
        let ansi = io::stderr().is_terminal();
        let builder = builder.with_writer(io::stderr).with_ansi(ansi);
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            builder.without_time().init();
        } else {
            builder.init();
        }
        return Ok(None);
    }
    let file = std::env::var_os(LOG_FILE_ENV).map(PathBuf::from);
    if file.is_none()
        && let Ok(syslog) = Syslog::connect(Path::new(SYSLOG_SOCKET))
    {
        builder
            .with_writer(syslog)
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .init();
        return Ok(Some(format!("syslog ({SYSLOG_SOCKET})")));
    }
    let path = file.unwrap_or_else(|| PathBuf::from(FALLBACK_LOG_FILE));
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)?;
    builder.with_writer(Arc::new(f)).with_ansi(false).init();
    Ok(Some(path.display().to_string()))
}

/// Sends each event as one RFC 3164 datagram, facility daemon, severity from its level.
#[derive(Clone)]
struct Syslog {
    socket: Arc<UnixDatagram>,
    tag: Arc<str>,
}

impl Syslog {
    fn connect(path: &Path) -> io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Syslog {
            socket: Arc::new(socket),
            tag: format!("guardd[{}]: ", std::process::id()).into(),
        })
    }
}

/// LOG_DAEMON.
const FACILITY_DAEMON: u8 = 3;

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One event's text, sent when the formatter is done with it.
struct SyslogEvent {
    syslog: Syslog,
    line: Vec<u8>,
}

impl Write for SyslogEvent {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogEvent {
    fn drop(&mut self) {
        while self.line.last() == Some(&b'\n') {
            self.line.pop();
        }
        // A log line lost because syslog is gone cannot be logged anywhere else.
        let _ = self.syslog.socket.send(&self.line);
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogEvent;

    fn make_writer(&'a self) -> SyslogEvent {
        self.make_event(&Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogEvent {
        self.make_event(meta.level())
    }
}

impl Syslog {
    fn make_event(&self, level: &Level) -> SyslogEvent {
        let pri = FACILITY_DAEMON * 8 + severity(level);
        let mut line = format!("<{pri}>").into_bytes();
        line.extend_from_slice(self.tag.as_bytes());
        SyslogEvent {
            syslog: self.clone(),
            line,
        }
    }
}
