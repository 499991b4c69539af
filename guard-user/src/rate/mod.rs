//! Rate rules: their compiled layout in `BUCKETS`, the refill of the buckets (through the
//! kernel layer's mapped `BUCKETS`), and the penalties the application charges.
pub mod penalty;
pub mod refill;
pub mod rules;
