//! What loading the program and writing or reading its maps can fail with: one error for
//! the whole kernel layer.

use aya::{EbpfError, maps::MapError, programs::ProgramError};
use guard_common::PROGRAM_NAME;

use crate::kernel::verifier::Refused;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot load the XDP object: {0}")]
    Load(#[source] EbpfError),
    #[error("the XDP object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("program {PROGRAM_NAME}: {0}")]
    Program(#[source] ProgramError),
    /// The verifier refused the program (the chain's next error, for whoever wants its log).
    #[error("{0}")]
    Refused(#[source] Box<Refused>),
    #[error("the XDP object has no program {PROGRAM_NAME}")]
    MissingProgram,
    #[error("cannot map {name} into memory")]
    Mmap {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{error}; putting back the previous state failed too ({undo}): restart guardd")]
    Undo {
        error: Box<KernelError>,
        undo: Box<KernelError>,
    },
    #[error("cannot count the possible CPUs")]
    Cpus(#[source] std::io::Error),
    #[error("cannot read a random key from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
}

impl KernelError {
    /// How every all-or-nothing change of this layer ends when a write failed: `error`, or,
    /// when putting back what the change wrote failed too, both.
    pub fn undone(error: KernelError, undo: Result<(), KernelError>) -> KernelError {
        match undo {
            Ok(()) => error,
            Err(undo) => KernelError::Undo {
                error: Box::new(error),
                undo: Box::new(undo),
            },
        }
    }

    /// A map operation that failed.
    pub fn map(name: &'static str) -> impl Fn(MapError) -> KernelError {
        move |source| KernelError::Map { name, source }
    }
}
