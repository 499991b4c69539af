//! Proof of work for a page with no login, in the spirit of Anubis: the server hands out a
//! signed challenge, the browser spends CPU finding a counter whose SHA-256 has enough
//! leading zero bits, and the server checks it once and vouches for the source through
//! guard, so the source passes a rule's empty endpoint budget for a while.
//!
//! A challenge is `nonce.issued.difficulty.mac`: 16 random bytes, unix seconds, the bits
//! asked for, and an HMAC-SHA256 of the three and the client's address under a key made at
//! start. Nothing is stored until a proof arrives: the MAC proves the server issued it, to
//! this address, at that time. A proof is `SHA-256(challenge ":" counter)` with at least
//! `difficulty` leading zero bits, at most `max_age` old, and accepted once (its nonce is
//! remembered until the challenge would have gone stale anyway; at most `MAX_REMEMBERED`).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ring::{
    digest, hmac,
    rand::{SecureRandom, SystemRandom},
};

/// Proofs remembered against replay at most: past it, new proofs are refused until old
/// ones age out (memory stays bounded whatever a client sends).
const MAX_REMEMBERED: usize = 1 << 20;
/// How far ahead of this clock an issue time may be.
const CLOCK_SLACK_SECS: u64 = 5;

pub struct Challenges {
    key: hmac::Key,
    rng: SystemRandom,
    pub difficulty: u8,
    max_age: Duration,
    /// Nonces already accepted, with the unix second after which they are stale anyway.
    used: Mutex<HashMap<[u8; 16], u64>>,
}

/// Why a proof is refused (the answer's `error`).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    /// Not issued by this server, or issued to another address.
    Forged,
    Stale,
    Replayed,
    TooEasy,
    /// The remembered proofs are at their bound.
    Busy,
}

impl Refused {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refused::Malformed => "not a challenge of this server",
            Refused::Forged => "the challenge was not issued to this address by this server",
            Refused::Stale => "the challenge is too old: ask for a new one",
            Refused::Replayed => "this proof was used already",
            Refused::TooEasy => "the hash has too few leading zero bits",
            Refused::Busy => "too many proofs to remember: try again shortly",
        }
    }
}

impl Challenges {
    pub fn new(difficulty: u8, max_age: Duration) -> anyhow::Result<Challenges> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("no randomness for the challenge key"))?;
        Ok(Challenges {
            key,
            rng,
            difficulty,
            max_age,
            used: Mutex::new(HashMap::new()),
        })
    }

    /// A new challenge for `ip`.
    pub fn issue(&self, ip: IpAddr) -> anyhow::Result<String> {
        let mut nonce = [0u8; 16];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let body = format!("{}.{}.{}", hex(&nonce), unix_now(), self.difficulty);
        let tag = hmac::sign(&self.key, signed(&body, ip).as_bytes());
        Ok(format!("{body}.{}", hex(tag.as_ref())))
    }

    /// Checks `counter` as the proof of `challenge` from `ip`, once.
    pub fn verify(&self, ip: IpAddr, challenge: &str, counter: u64) -> Result<(), Refused> {
        self.verify_at(ip, challenge, counter, unix_now())
    }

    fn verify_at(
        &self,
        ip: IpAddr,
        challenge: &str,
        counter: u64,
        now: u64,
    ) -> Result<(), Refused> {
        let parts: Vec<&str> = challenge.split('.').collect();
        let [nonce, issued, difficulty, tag] = parts[..] else {
            return Err(Refused::Malformed);
        };
        let body = &challenge[..challenge.len() - tag.len() - 1];
        let tag = unhex(tag).ok_or(Refused::Malformed)?;
        hmac::verify(&self.key, signed(body, ip).as_bytes(), &tag).map_err(|_| Refused::Forged)?;
        // Signed by this server: the fields are its own.
        let nonce: [u8; 16] = unhex(nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or(Refused::Malformed)?;
        let issued: u64 = issued.parse().map_err(|_| Refused::Malformed)?;
        let difficulty: u32 = difficulty.parse().map_err(|_| Refused::Malformed)?;
        let stale_after = issued + self.max_age.as_secs();
        if issued > now + CLOCK_SLACK_SECS || now > stale_after {
            return Err(Refused::Stale);
        }
        let hash = digest::digest(&digest::SHA256, format!("{challenge}:{counter}").as_bytes());
        if leading_zero_bits(hash.as_ref()) < difficulty {
            return Err(Refused::TooEasy);
        }
        let mut used = self.used.lock().expect("used proofs");
        if used.contains_key(&nonce) {
            return Err(Refused::Replayed);
        }
        if used.len() >= MAX_REMEMBERED {
            used.retain(|_, stale| *stale >= now);
            if used.len() >= MAX_REMEMBERED {
                return Err(Refused::Busy);
            }
        }
        used.insert(nonce, stale_after);
        Ok(())
    }
}

/// What the MAC covers: the challenge's fields and the address it was issued to.
fn signed(body: &str, ip: IpAddr) -> String {
    format!("{body}|{}", ip.to_canonical())
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for b in hash {
        if *b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counter a browser would find.
    fn solve(challenge: &str, difficulty: u32) -> u64 {
        (0..)
            .find(|c| {
                let h = digest::digest(&digest::SHA256, format!("{challenge}:{c}").as_bytes());
                leading_zero_bits(h.as_ref()) >= difficulty
            })
            .unwrap()
    }

    #[test]
    fn a_proof_is_accepted_once_from_its_address_while_fresh() {
        let c = Challenges::new(8, Duration::from_secs(120)).unwrap();
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        let ch = c.issue(ip).unwrap();
        let counter = solve(&ch, 8);
        let other: IpAddr = "198.18.0.3".parse().unwrap();
        assert_eq!(
            c.verify(other, &ch, counter),
            Err(Refused::Forged),
            "another address"
        );
        let tampered = ch.replacen(".8.", ".1.", 1);
        assert_eq!(
            c.verify(ip, &tampered, counter),
            Err(Refused::Forged),
            "easier by hand"
        );
        let now = unix_now();
        assert_eq!(
            c.verify_at(ip, &ch, counter, now + 121),
            Err(Refused::Stale)
        );
        let wrong =
            (counter + 1..).find(|n| c.verify_at(ip, &ch, *n, now) == Err(Refused::TooEasy));
        assert!(wrong.is_some(), "a counter that does not solve it");
        assert_eq!(c.verify(ip, &ch, counter), Ok(()));
        assert_eq!(c.verify(ip, &ch, counter), Err(Refused::Replayed));
        for junk in ["", "a.b.c", "zz.1.8.00", &format!("{ch}.x")] {
            assert!(c.verify(ip, junk, 0).is_err(), "{junk:?}");
        }
    }
}
