//! A rule's class, from its window against its baseline (docs/SHAPE.md has the reasons for
//! every threshold):
//! - `concentrated`: N/D above `CONCENTRATED` x its day's high: a few sources send far more
//!   each (the per-source limits' work);
//! - else, when D is above `FAR` x its day's high (and at least `MIN_SOURCES`): `growth` if
//!   D rose at most `PACE` x per window from the last calm window's and N/D held at least
//!   half its mean (a crowd arrives at a crowd's pace, each visitor sending its usual share),
//!   otherwise `distributed` (a botnet's jump, or forged sources sending a packet or so each);
//! - else `growth` when N and D are both above their day's high with N/D held, `normal`
//!   otherwise.
//!
//! `distributed` is entered after `ENTER` windows in a row and left after `LEAVE` calm ones,
//! so one odd window neither engages a budget nor lets it go in the middle of an attack.

use serde::Serialize;

use super::baseline::Baseline;

pub const CONCENTRATED: f64 = 4.0;
pub const FAR: f64 = 4.0;
pub const MIN_SOURCES: f64 = 100.0;
pub const PACE: f64 = 2.0;
pub const ENTER: u32 = 2;
pub const LEAVE: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Normal,
    Concentrated,
    Distributed,
    Growth,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::Normal,
        Class::Concentrated,
        Class::Distributed,
        Class::Growth,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Class::Normal => "normal",
            Class::Concentrated => "concentrated",
            Class::Distributed => "distributed",
            Class::Growth => "growth",
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<Class> {
        Class::ALL.get(c as usize).copied()
    }
}

/// The class of one window taken alone (`raw`), `None` while the baseline warms up.
pub fn raw(packets: f64, sources: f64, base: &Baseline, level: f64) -> Option<Class> {
    if base.warming_up() {
        return None;
    }
    let per_source = if sources >= 1.0 {
        packets / sources
    } else {
        0.0
    };
    let held = per_source >= base.per_source.mean / 2.0;
    if per_source > CONCENTRATED * base.per_source.high() {
        return Some(Class::Concentrated);
    }
    if sources > (FAR * base.sources.high()).max(MIN_SOURCES) {
        let paced = sources <= PACE * level.max(1.0);
        return Some(if paced && held {
            Class::Growth
        } else {
            Class::Distributed
        });
    }
    if sources > base.sources.high() && packets > base.packets.high() && held {
        return Some(Class::Growth);
    }
    Some(Class::Normal)
}

/// A rule's class over time: the raw classes, with the way in and out of `distributed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    pub class: Class,
    /// Raw `distributed` windows in a row, and calm windows in a row while `distributed`.
    attack: u32,
    calm: u32,
    /// D of the last calm window: how far a crowd has come.
    pub level: f64,
    /// Times `distributed` was entered.
    pub engagements: u64,
}

impl Default for Classifier {
    fn default() -> Classifier {
        Classifier {
            class: Class::Normal,
            attack: 0,
            calm: 0,
            level: 0.0,
            engagements: 0,
        }
    }
}

impl Classifier {
    /// Takes a window's raw class (`None`: warming up); the class in force after it.
    pub fn step(&mut self, raw: Option<Class>, sources: f64) -> Class {
        let Some(raw) = raw else {
            self.level = sources;
            return self.class;
        };
        if matches!(raw, Class::Normal | Class::Growth) {
            self.level = sources;
        }
        if raw == Class::Distributed {
            self.calm = 0;
            self.attack += 1;
            if self.attack >= ENTER && self.class != Class::Distributed {
                self.class = Class::Distributed;
                self.engagements += 1;
            }
            return self.class;
        }
        self.attack = 0;
        if self.class == Class::Distributed {
            self.calm += 1;
            if self.calm < LEAVE {
                return self.class;
            }
            self.calm = 0;
        }
        self.class = raw;
        self.class
    }

    /// Bytes for the state database: class, attack, calm, level, engagements.
    pub fn encode(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[0] = self.class.code();
        b[1..5].copy_from_slice(&self.attack.to_le_bytes());
        b[5..9].copy_from_slice(&self.calm.to_le_bytes());
        b[9..17].copy_from_slice(&self.level.to_le_bytes());
        b[17..25].copy_from_slice(&self.engagements.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Classifier, String> {
        if b.len() != 25 {
            return Err(format!("a shape class of {} bytes (want 25)", b.len()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let level = f64::from_le_bytes(b[9..17].try_into().expect("8 bytes"));
        if !(level.is_finite() && level >= 0.0) {
            return Err("a shape class with a non-finite level".into());
        }
        Ok(Classifier {
            class: Class::from_code(b[0]).ok_or(format!("a shape class of code {}", b[0]))?,
            attack: u32_at(1).min(ENTER),
            calm: u32_at(5).min(LEAVE),
            level,
            engagements: u64::from_le_bytes(b[17..25].try_into().expect("8 bytes")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A baseline of 40 windows of 1,000 packets from 100 sources.
    fn usual() -> Baseline {
        let mut b = Baseline::default();
        for _ in 0..40 {
            b.learn(1000.0, 100.0);
        }
        b
    }

    #[test]
    fn each_class_from_its_shape() {
        let b = usual();
        assert_eq!(raw(1000.0, 100.0, &Baseline::default(), 100.0), None);
        assert_eq!(raw(1050.0, 98.0, &b, 100.0), Some(Class::Normal));
        // Ten of the hundred sources at 100 times their usual 10 packets.
        assert_eq!(raw(10_900.0, 100.0, &b, 100.0), Some(Class::Concentrated));
        // One of a hundred is not far enough above the usual to tell.
        assert_eq!(raw(1990.0, 100.0, &b, 100.0), Some(Class::Normal));
        // 20 times the sources at once, each at its usual rate or forged at one packet.
        assert_eq!(raw(20_000.0, 2000.0, &b, 100.0), Some(Class::Distributed));
        assert_eq!(raw(5000.0, 5000.0, &b, 100.0), Some(Class::Distributed));
        // A crowd: 1.5 times the last window's sources, each at its usual rate.
        assert_eq!(raw(6000.0, 600.0, &b, 400.0), Some(Class::Growth));
        // Forged sources arriving at a crowd's pace still send a packet or so each.
        assert_eq!(raw(600.0, 600.0, &b, 400.0), Some(Class::Distributed));
        assert_eq!(raw(1500.0, 150.0, &b, 100.0), Some(Class::Growth));
    }

    #[test]
    fn distributed_is_entered_after_two_windows_and_left_after_six_calm_ones() {
        let mut c = Classifier::default();
        assert_eq!(c.step(Some(Class::Distributed), 2000.0), Class::Normal);
        assert_eq!(c.step(Some(Class::Distributed), 2000.0), Class::Distributed);
        assert_eq!(c.engagements, 1);
        for _ in 0..LEAVE - 1 {
            assert_eq!(c.step(Some(Class::Normal), 100.0), Class::Distributed);
        }
        assert_eq!(c.step(Some(Class::Normal), 100.0), Class::Normal);
        let back = Classifier::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert!(Classifier::decode(&[9; 25]).is_err());
    }
}
