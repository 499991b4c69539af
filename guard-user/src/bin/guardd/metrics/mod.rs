//! Prometheus metrics at `metrics.listen`: the kernel's per-CPU counters are read at scrape
//! time (a `Collector`), refill durations and API requests are recorded as they happen.
//! Scrapers get OpenMetrics when they ask for it, else the Prometheus text format.

mod text_format;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
    },
    registry::Registry,
};

use crate::state::Shared;

/// `guard_api_requests_total{route,code}`.
pub type ApiRequests = Family<Vec<(&'static str, String)>, Counter>;

pub fn registry(daemon: Shared, api: ApiRequests) -> Arc<Registry> {
    let mut r = Registry::default();
    if let Some(stats) = daemon.engine.refill_stats() {
        r.register(
            "guard_refill_duration_seconds",
            "Duration of one refill tick",
            stats.duration.clone(),
        );
    }
    if let Some(fleet) = daemon.engine.fleet() {
        r.register(
            "guard_fleet_propagation_seconds",
            "Seconds from a verdict made on another node to in force here",
            fleet.propagation.clone(),
        );
    }
    r.register(
        "guard_api_requests",
        "Control API requests by route and status code",
        api,
    );
    r.register_collector(Box::new(Kernel { daemon }));
    Arc::new(r)
}

/// Reads the datapath's counters on each scrape.
struct Kernel {
    daemon: Shared,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kernel")
    }
}

impl Collector for Kernel {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = &self.daemon;
        let Ok(stats) = d.engine.stats() else {
            return Ok(());
        };
        let mut packets = enc.encode_descriptor(
            "guard_packets",
            "Packets seen by the XDP program, by verdict and reason",
            None,
            MetricType::Counter,
        )?;
        for p in &stats.packets {
            let labels = [
                ("verdict", p.verdict.as_str()),
                ("reason", p.reason.as_str()),
            ];
            ConstCounter::new(p.packets).encode(packets.encode_family(&labels)?)?;
        }
        let mut rules = enc.encode_descriptor(
            "guard_rule_packets",
            "Packets each rate rule passed or limited",
            None,
            MetricType::Counter,
        )?;
        for r in &stats.rules {
            for (verdict, n) in [("pass", r.passed), ("limited", r.limited)] {
                ConstCounter::new(n).encode(
                    rules.encode_family(&[("rule", r.rule.as_str()), ("verdict", verdict)])?,
                )?;
            }
        }
        let mut budget = enc.encode_descriptor(
            "guard_rule_budget_tokens",
            "Tokens left in each rule's endpoint budget (rules with total_rate)",
            None,
            MetricType::Gauge,
        )?;
        for r in &stats.rules {
            if let Some(t) = r.budget_tokens {
                ConstGauge::new(t).encode(budget.encode_family(&[("rule", r.rule.as_str())])?)?;
            }
        }
        let mut known = enc.encode_descriptor(
            "guard_known_sources",
            "Sources an empty endpoint budget lets through: verified by a TCP handshake, or vouched for",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in [
            ("verified", stats.known.verified),
            ("vouched", stats.known.vouched),
        ] {
            ConstGauge::new(n as i64).encode(known.encode_family(&[("kind", kind)])?)?;
        }
        let gauges = [
            (
                "guard_bans_active",
                "Bans in force",
                stats.bans_active as i64,
            ),
            (
                "guard_allows_active",
                "Temporary and permanent allows in force",
                stats.allows_active as i64,
            ),
        ];
        for (name, help, v) in gauges {
            ConstGauge::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        let bans_refused = enc.encode_descriptor(
            "guard_bans_refused",
            "Ban and allow requests refused because the table was full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.bans_refused_full).encode(bans_refused)?;
        ConstGauge::new(d.engine.unsaved() as i64).encode(enc.encode_descriptor(
            "guard_state_unsaved_changes",
            "Ban and allow changes enforced but not yet written to the state database",
            None,
            MetricType::Gauge,
        )?)?;
        auto_metrics(d.engine.auto_counts(), &mut enc)?;
        shape_metrics(&d.engine.shape(), &mut enc)?;
        if let Some(fleet) = d.engine.fleet() {
            fleet_metrics(fleet, &mut enc)?;
        }
        if let Some(age) = d.heartbeat_age_secs() {
            let e = enc.encode_descriptor(
                "guard_refill_heartbeat_age_seconds",
                "Seconds since the last refill; rate rules fail open past refill_stale_after",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(age).encode(e)?;
        }
        Ok(())
    }
}

/// Binds the metrics listener (at start, so a taken port is a start-up error).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics: cannot listen on {listen}"))
}

/// `GET /metrics`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
}

async fn scrape(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    let mut body = String::new();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match encode(&mut body, &registry) {
        Ok(()) if text_format::wants_openmetrics(accept) => (
            [(header::CONTENT_TYPE, text_format::OPENMETRICS_CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Ok(()) => (
            [(header::CONTENT_TYPE, text_format::CONTENT_TYPE)],
            text_format::to_text_format(&body),
        )
            .into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed",
        )
            .into_response(),
    }
}

/// Counts every API request by matched route and status code.
pub async fn count_requests(State(api): State<ApiRequests>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    api.get_or_create(&vec![("route", route), ("code", code)])
        .inc();
    resp
}

/// The attack shape of each rule's last window, and its class.
fn shape_metrics(
    shape: &guard_user::engine::ShapeReport,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let figures = [
        (
            "guard_rule_sources",
            "Distinct sources (at the rule's prefix) each rule matched in the last shape window, estimated in the kernel",
            (|w: &guard_user::shape::Window| w.sources) as fn(&guard_user::shape::Window) -> f64,
        ),
        (
            "guard_rule_packets_per_source",
            "Packets per distinct source each rule matched in the last shape window",
            |w| w.packets_per_source,
        ),
    ];
    for (name, help, value) in figures {
        let mut e = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for r in &shape.rules {
            if let Some(w) = &r.window {
                ConstGauge::new(value(w)).encode(e.encode_family(&[("rule", r.rule.as_str())])?)?;
            }
        }
    }
    let mut class = enc.encode_descriptor(
        "guard_rule_shape",
        "Each rule's traffic shape: 1 for its class (normal, concentrated, distributed, growth)",
        None,
        MetricType::Gauge,
    )?;
    for r in &shape.rules {
        for c in guard_user::shape::Class::ALL {
            let labels = [("rule", r.rule.as_str()), ("class", c.label())];
            ConstGauge::new((r.class == c) as i64).encode(class.encode_family(&labels)?)?;
        }
    }
    let mut engaged = enc.encode_descriptor(
        "guard_rule_shape_distributed",
        "Times each rule's shape turned distributed (what engages an under_attack budget)",
        None,
        MetricType::Counter,
    )?;
    for r in &shape.rules {
        ConstCounter::new(r.engagements)
            .encode(engaged.encode_family(&[("rule", r.rule.as_str())])?)?;
    }
    Ok(())
}

fn auto_metrics(
    counts: &guard_user::auto::AutoCounts,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    use guard_user::auto::{AutoKind, Skip};
    let families = [
        (
            "guard_auto_bans",
            "Automatic bans made: kind rule (a rule's ban_after) or aggregate (a prefix replacing its members' bans)",
            false,
        ),
        (
            "guard_auto_bans_monitored",
            "Automatic bans monitor mode logged instead of making, by kind",
            true,
        ),
    ];
    for (name, help, monitored) in families {
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for kind in AutoKind::ALL {
            let n = if monitored {
                counts.monitored(kind)
            } else {
                counts.applied(kind)
            };
            ConstCounter::new(n).encode(family.encode_family(&[("kind", kind.as_str())])?)?;
        }
    }
    let mut family = enc.encode_descriptor(
        "guard_auto_bans_skipped",
        "Automatic bans not made, by kind and reason (protected: it would cover a protected address)",
        None,
        MetricType::Counter,
    )?;
    for kind in AutoKind::ALL {
        for why in Skip::ALL {
            let labels = [("kind", kind.as_str()), ("reason", why.as_str())];
            ConstCounter::new(counts.skipped(kind, why)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn fleet_metrics(
    fleet: &guard_user::fleet::Fleet,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let status = fleet.status();
    ConstGauge::new(i64::from(status.connected)).encode(enc.encode_descriptor(
        "guard_fleet_connected",
        "1 while connected to a NATS server of the fleet",
        None,
        MetricType::Gauge,
    )?)?;
    ConstGauge::new(status.outbox as i64).encode(enc.encode_descriptor(
        "guard_fleet_outbox_entries",
        "Verdicts made here that NATS has not acknowledged yet",
        None,
        MetricType::Gauge,
    )?)?;
    let mut applied = enc.encode_descriptor(
        "guard_fleet_applied",
        "Verdicts made on other nodes applied here, by kind",
        None,
        MetricType::Counter,
    )?;
    for (kind, n) in guard_user::fleet::APPLIED_KINDS.iter().zip(fleet.applied()) {
        ConstCounter::new(n).encode(applied.encode_family(&[("kind", *kind)])?)?;
    }
    let mut refused = enc.encode_descriptor(
        "guard_fleet_refused",
        "Records from the fleet refused here (nothing applied, no local verdict changed), by reason",
        None,
        MetricType::Counter,
    )?;
    for (why, n) in guard_user::fleet::record::Refusal::ALL
        .iter()
        .zip(fleet.refused())
    {
        ConstCounter::new(n).encode(refused.encode_family(&[("reason", why.as_str())])?)?;
    }
    ConstCounter::new(fleet.outbox.dropped.load(Relaxed)).encode(enc.encode_descriptor(
        "guard_fleet_outbox_dropped",
        "Unpublished verdicts dropped because the outbox was full (they stay in force here)",
        None,
        MetricType::Counter,
    )?)?;
    Ok(())
}
