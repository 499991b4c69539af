//! Rate rules: their compiled layout in `BUCKETS`, the refill of the buckets, and the
//! penalties the application charges.
pub mod buckets;
pub mod penalty;
pub mod refill;
pub mod rules;
