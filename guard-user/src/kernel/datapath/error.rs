//! What loading and writing the datapath can fail with.

use aya::{EbpfError, maps::MapError, programs::ProgramError};
use guard_common::PROGRAM_NAME;

use crate::kernel::verifier::Refused;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
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
        error: Box<DatapathError>,
        undo: Box<DatapathError>,
    },
    #[error("cannot read a random key from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
}
