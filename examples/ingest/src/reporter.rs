//! Tells guard about junk senders: a penalty each time, a ban after repeats.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, sync::Mutex};

use guard_user::{
    control::client::Client,
    control::model::{Applied, EntryRequest, PenaltyRequest, PenaltyResult},
    control::routes,
};
use tracing::{info, warn};

pub struct Reporter {
    client: Client,
    penalty: u64,
    ban_after: u32,
    strikes: Mutex<HashMap<IpAddr, u32>>,
}

impl Reporter {
    pub fn new(socket: PathBuf, penalty: u64, ban_after: u32) -> Reporter {
        Reporter {
            client: Client::new(socket),
            penalty,
            ban_after,
            strikes: Mutex::new(HashMap::new()),
        }
    }

    /// Vouches for `ip` (one address) for `ttl`, or guard's default; the expiry guard set.
    pub async fn vouch(
        &self,
        ip: IpAddr,
        ttl: Option<std::time::Duration>,
    ) -> Result<Option<String>, guard_user::control::client::ClientError> {
        let req = EntryRequest {
            cidr: ip.to_string(),
            ttl_secs: ttl.map(|t| t.as_secs().max(1)),
            reason: Some("solved the proof-of-work challenge".into()),
            local: false,
        };
        let a: Applied = self.client.post(routes::VOUCHES, &req).await?;
        info!(%ip, expires = ?a.applied[0].expires_at, "vouched");
        Ok(a.applied[0].expires_at.clone())
    }

    pub async fn junk(&self, ip: IpAddr, why: &str) {
        let strikes = {
            let mut s = self.strikes.lock().expect("strikes");
            let n = s.entry(ip).or_default();
            *n += 1;
            *n
        };
        if strikes >= self.ban_after {
            let req = EntryRequest {
                cidr: ip.to_string(),
                ttl_secs: None,
                reason: Some(format!("junk events: {why}")),
                local: false,
            };
            match self.client.post::<_, Applied>(routes::BANS, &req).await {
                Ok(a) => {
                    info!(%ip, strikes, expires = ?a.applied[0].expires_at, "banned");
                    self.strikes.lock().expect("strikes").remove(&ip);
                }
                Err(e) => warn!(%ip, error = %e, "ban refused"),
            }
        } else {
            let req = PenaltyRequest {
                ip: ip.to_string(),
                tokens: self.penalty,
                rule: None,
            };
            if let Err(e) = self
                .client
                .post::<_, PenaltyResult>(routes::PENALTIES, &req)
                .await
            {
                warn!(%ip, error = %e, "penalty refused");
            }
        }
    }
}
