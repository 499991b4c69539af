//! Classic daemon start without `--foreground`: fork before any thread exists; the parent
//! waits until the child is ready (exit 0) or has failed (exit 1, the child printed why),
//! so a script that starts guardd still sees start-up errors.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::{AsRawFd, OwnedFd},
    process::ExitCode,
};

use nix::unistd::{ForkResult, dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe, setsid};

pub enum Role {
    Parent(ExitCode),
    Child(Ready),
}

/// The child's end of the start-up pipe.
pub struct Ready(File);

impl Ready {
    /// Tells the parent start-up succeeded and lets go of the terminal.
    pub fn done(mut self) {
        let _ = self.0.write_all(b"ready\n");
        if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
            let _ = dup2_stdin(&null);
            let _ = dup2_stdout(&null);
            let _ = dup2_stderr(&null);
        }
    }
}

pub fn detach() -> nix::Result<Role> {
    let (read_end, write_end): (OwnedFd, OwnedFd) = pipe()?;
    // SAFETY: called first thing in main, while the process has a single thread.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut answer = String::new();
            let _ = File::from(read_end).read_to_string(&mut answer);
            if answer.starts_with("ready") {
                println!("guardd: running in the background (pid {child})");
                Ok(Role::Parent(ExitCode::SUCCESS))
            } else {
                Ok(Role::Parent(ExitCode::FAILURE))
            }
        }
        ForkResult::Child => {
            drop(read_end);
            setsid()?;
            debug_assert!(write_end.as_raw_fd() > 2);
            Ok(Role::Child(Ready(File::from(write_end))))
        }
    }
}
