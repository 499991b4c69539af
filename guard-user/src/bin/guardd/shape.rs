//! The attack shape's clock: every window, the engine flips the kernel's window, waits for
//! the packets being judged under the old one, and classifies it (`guard_user::shape`).

use std::{sync::Arc, time::Duration};

use guard_user::engine::Engine;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep};
use tracing::error;

/// How long after a flip the ended window is read: a packet being judged when the window
/// flipped writes its old slot within microseconds.
const SETTLE: Duration = Duration::from_millis(20);

pub async fn run(engine: Arc<Engine>) {
    let window = engine.shape_window();
    if let Err(e) = blocking(&engine, Engine::shape_begin).await {
        error!("the attack shape cannot start ({e}); under_attack budgets stay as they are");
        return;
    }
    let mut tick = interval_at(Instant::now() + window, window);
    // A late tick makes one long window, not a burst of short ones.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = blocking(&engine, Engine::shape_flip).await {
            error!("attack shape: {e}");
            continue;
        }
        sleep(SETTLE).await;
        if let Err(e) = blocking(&engine, Engine::shape_close).await {
            error!("attack shape: {e}");
        }
    }
}

async fn blocking(
    engine: &Arc<Engine>,
    f: fn(&Engine) -> Result<(), guard_user::engine::EngineError>,
) -> Result<(), String> {
    let e = engine.clone();
    match tokio::task::spawn_blocking(move || f(&e)).await {
        Ok(r) => r.map_err(|e| guard_user::error_chain(&e)),
        Err(e) => Err(e.to_string()),
    }
}
