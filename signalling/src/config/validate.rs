//! The rules of the configuration: [`Config::validate`] checks them all and lists every problem,
//! so that `sportello check-config` can report them at once.

use super::{AuthConfig, Config, LimitsConfig, MAX_DEMO_KIOSKS, MAX_DEMO_OPERATORS};

impl AuthConfig {
    /// The problems of the login limits (empty when valid).
    fn login_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (what, value, max) in [
            ("login_concurrency", self.login_concurrency as u64, 1024),
            ("login_queue", self.login_queue as u64, 100_000),
        ] {
            if value > max {
                problems.push(format!("auth.{what}: {value} must be at most {max}"));
            }
        }
        for (what, value, max) in [
            ("login_per_address", self.login_per_address as u64, 100_000),
            (
                "login_failure_window_s",
                self.login_failure_window_s,
                86_400,
            ),
            (
                "login_failures_per_user_address",
                u64::from(self.login_failures_per_user_address),
                1_000_000,
            ),
            (
                "login_failures_per_address",
                u64::from(self.login_failures_per_address),
                1_000_000,
            ),
            (
                "login_log_lines_per_minute",
                u64::from(self.login_log_lines_per_minute),
                100_000,
            ),
        ] {
            if !(1..=max).contains(&value) {
                problems.push(format!("auth.{what}: {value} must be between 1 and {max}"));
            }
        }
        problems
    }
}

impl LimitsConfig {
    /// The problems of the limits (empty when valid).
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (what, value) in [
            ("header_timeout_s", self.header_timeout_s),
            ("body_timeout_s", self.body_timeout_s),
        ] {
            if !(1..=600).contains(&value) {
                problems.push(format!("limits.{what}: {value} must be between 1 and 600"));
            }
        }
        if !(1..=10_000).contains(&self.admin_connections) {
            problems.push(format!(
                "limits.admin_connections: {} must be between 1 and 10000",
                self.admin_connections
            ));
        }
        if self.fd_reserve < 64 {
            problems.push(format!(
                "limits.fd_reserve: {} must be at least 64",
                self.fd_reserve
            ));
        }
        if let Some(all) = self.trusted_proxies.iter().find(|r| r.prefix_len() == 0) {
            problems.push(format!(
                "limits.trusted_proxies: {all} would let any client choose its own address; list \
                 the proxies' addresses or their network"
            ));
        }
        problems
    }
}

impl Config {
    /// Checks every rule and returns all the problems found (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            problems.push(format!(
                "listen and admin_listen are the same address {}",
                self.listen
            ));
        }
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+sentinel://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                problems.push(format!(
                    "redis: {url:?} is not a redis://, rediss://, redis+sentinel:// or unix:// URL"
                ));
            }
        }
        if let Err(e) = self.media.sfu_config(self.listen) {
            problems.push(e);
        }
        problems.extend(self.cluster.problems(self.redis.is_some()));
        if let Some(turn) = &self.turn {
            problems.extend(turn.problems());
        }
        problems.extend(self.web.problems());
        problems.extend(super::dispositions::problems(&self.dispositions));
        problems.extend(self.history.problems());
        if self.media.loop_priority > 99 {
            problems.push(format!(
                "media.loop_priority: {} must be 0 (off) or 1 to 99 (SCHED_RR)",
                self.media.loop_priority
            ));
        }
        if !(1..=MAX_DEMO_KIOSKS).contains(&self.demo.kiosks) {
            problems.push(format!(
                "demo.kiosks: {} must be between 1 and {MAX_DEMO_KIOSKS}",
                self.demo.kiosks
            ));
        }
        if !(1..=MAX_DEMO_OPERATORS).contains(&self.demo.operators) {
            problems.push(format!(
                "demo.operators: {} must be between 1 and {MAX_DEMO_OPERATORS}",
                self.demo.operators
            ));
        }
        if let Err(e) = self.certificates.seal.check() {
            problems.push(format!("certificates.seal: {e}"));
        }
        if let Some(path) = &self.identity.ca_bundle {
            if let Err(e) = certificates::identity::CardVerifier::from_file(path) {
                problems.push(format!("identity.ca_bundle: {e}"));
            }
        }
        if self.identity.pec_attempts == 0 || self.identity.pec_code_ttl_s == 0 {
            problems.push("identity: pec_attempts and pec_code_ttl_s must be at least 1".into());
        }
        if let Some(url) = &self.mail.smtp_url {
            if let Err(e) = crate::mail::Mailer::new(url, &self.mail.from, &self.municipality) {
                problems.push(e);
            }
        }
        if self.media.udp.trim() == "off" && self.media.tcp.trim() == "off" {
            problems.push("media: udp and tcp are both \"off\"; calls would have no media".into());
        }
        if !is_name(&self.tenant) {
            problems.push(format!(
                "tenant: {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
                self.tenant
            ));
        }
        if let Some(tls) = &self.tls {
            for (what, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.is_file() {
                    problems.push(format!("{what}: file {} does not exist", path.display()));
                }
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problems.push(format!(
                "log.level: {:?} is not a valid filter",
                self.log.level
            ));
        }
        if !(60..=7 * 24 * 3600).contains(&self.auth.token_ttl_s) {
            problems.push(format!(
                "auth.token_ttl_s: {} must be between 60 and 604800",
                self.auth.token_ttl_s
            ));
        }
        if !(60..=self.auth.token_ttl_s.max(60)).contains(&self.auth.access_ttl_s) {
            problems.push(format!(
                "auth.access_ttl_s: {} must be between 60 and auth.token_ttl_s ({})",
                self.auth.access_ttl_s, self.auth.token_ttl_s
            ));
        }
        problems.extend(self.auth.login_problems());
        if !(1..=300).contains(&self.ws.heartbeat_s) {
            problems.push(format!(
                "ws.heartbeat_s: {} must be between 1 and 300",
                self.ws.heartbeat_s
            ));
        }
        for (what, value) in [
            ("ws.kiosk_grace_s", self.ws.kiosk_grace_s),
            ("ws.operator_grace_s", self.ws.operator_grace_s),
            ("ws.supervisor_grace_s", self.ws.supervisor_grace_s),
        ] {
            if value > 3600 {
                problems.push(format!("{what}: {value} must be at most 3600"));
            }
        }
        if !(1..=10_000).contains(&self.ws.rate_per_s) {
            problems.push(format!(
                "ws.rate_per_s: {} must be between 1 and 10000",
                self.ws.rate_per_s
            ));
        }
        if self.ws.rate_burst < self.ws.rate_per_s.min(10_000) || self.ws.rate_burst > 100_000 {
            problems.push(format!(
                "ws.rate_burst: {} must be at least ws.rate_per_s and at most 100000",
                self.ws.rate_burst
            ));
        }
        problems.extend(self.limits.problems());
        if self.shutdown.drain_s > 3600 {
            problems.push(format!(
                "shutdown.drain_s: {} must be at most 3600",
                self.shutdown.drain_s
            ));
        }

        if !(1..=600).contains(&self.queue.offer_lease_s) {
            problems.push(format!(
                "queue.offer_lease_s: {} must be between 1 and 600",
                self.queue.offer_lease_s
            ));
        }
        if self.queue.max_missed_offers == 0 {
            problems.push("queue.max_missed_offers: must be at least 1".into());
        }
        if self.queue.wrapup_s > 3600 {
            problems.push(format!(
                "queue.wrapup_s: {} must be at most 3600",
                self.queue.wrapup_s
            ));
        }
        if self.queue.service_level_s == 0 {
            problems.push("queue.service_level_s: must be at least 1".into());
        }
        for service in self.queue.service_level_by_service.keys() {
            if !is_name(service) {
                problems.push(format!(
                    "queue.service_level_by_service: {service:?} is not a valid service name"
                ));
            }
        }
        if self.queue.default_aht_s == 0 {
            problems.push("queue.default_aht_s: must be at least 1".into());
        }
        if jiff::tz::TimeZone::get(&self.queue.time_zone).is_err() {
            problems.push(format!(
                "queue.time_zone: {:?} is not an IANA time zone (e.g. \"Europe/Rome\")",
                self.queue.time_zone
            ));
        }

        let mut usernames = std::collections::HashSet::new();
        for (i, op) in self.operators.iter().enumerate() {
            let at = format!("operators[{i}] ({})", op.username);
            if !is_name(&op.username) {
                problems.push(format!(
                    "{at}: username must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ));
            }
            if !usernames.insert(op.username.as_str()) {
                problems.push(format!("{at}: username is used twice"));
            }
            check_password_hash(&at, &op.password_hash, &mut problems);
            if op.skills.is_empty() {
                problems.push(format!("{at}: skills must name at least one service"));
            }
            for (service, level) in &op.skills {
                if !is_name(service) {
                    problems.push(format!(
                        "{at}: skill {service:?} is not a valid service name"
                    ));
                }
                if !(1..=10).contains(level) {
                    problems.push(format!(
                        "{at}: skill {service} has level {level}; levels are 1 to 10"
                    ));
                }
            }
            if op.languages.is_empty() {
                problems.push(format!("{at}: languages must list at least one language"));
            }
            for lang in &op.languages {
                if !is_language(lang) {
                    problems.push(format!(
                        "{at}: language {lang:?} is not a two-letter ISO 639-1 code"
                    ));
                }
            }
            if !(1..=6).contains(&op.capacity) {
                problems.push(format!(
                    "{at}: capacity {} must be between 1 and 6",
                    op.capacity
                ));
            }
        }
        for (i, sup) in self.supervisors.iter().enumerate() {
            let at = format!("supervisors[{i}] ({})", sup.username);
            if !is_name(&sup.username) {
                problems.push(format!(
                    "{at}: username must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ));
            }
            if !usernames.insert(sup.username.as_str()) {
                problems.push(format!("{at}: username is used twice"));
            }
            check_password_hash(&at, &sup.password_hash, &mut problems);
        }
        let mut kiosk_ids = std::collections::HashSet::new();
        let mut token_hashes = std::collections::HashSet::new();
        for (i, kiosk) in self.kiosks.iter().enumerate() {
            let at = format!("kiosks[{i}] ({})", kiosk.id);
            if !is_name(&kiosk.id) {
                problems.push(format!(
                    "{at}: id must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ));
            }
            if !kiosk_ids.insert(kiosk.id.as_str()) {
                problems.push(format!("{at}: id is used twice"));
            }
            if kiosk.name.trim().is_empty() {
                problems.push(format!("{at}: name must not be empty"));
            }
            if crate::accounts::parse_token_hash(&kiosk.token_hash).is_none() {
                problems.push(format!(
                    "{at}: token_hash must be \"sha256:\" followed by 64 hex digits (sportello hash-token)"
                ));
            } else if !token_hashes.insert(kiosk.token_hash.to_ascii_lowercase()) {
                problems.push(format!("{at}: token_hash is shared with another kiosk"));
            }
            for service in &kiosk.services {
                if !is_name(service) {
                    problems.push(format!("{at}: service {service:?} is not a valid name"));
                }
            }
        }
        if self.demo_enabled() && !self.demo.allow_non_loopback {
            for (what, addr) in [("listen", self.listen), ("admin_listen", self.admin_listen)] {
                if !addr.ip().is_loopback() {
                    problems.push(format!(
                        "{what}: demo accounts are enabled and {addr} is not a loopback address; \
                         configure accounts, or set demo.allow_non_loopback = true \
                         (--allow-demo-on-network) on a closed training network"
                    ));
                }
            }
        }
        problems
    }
}

fn check_password_hash(at: &str, hash: &str, problems: &mut Vec<String>) {
    match argon2::PasswordHash::new(hash) {
        Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => {}
        _ => problems.push(format!(
            "{at}: password_hash is not an argon2 PHC string (sportello hash-password)"
        )),
    }
}

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

fn is_language(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeRole;

    #[test]
    fn the_media_loop_priority_is_off_or_a_real_time_priority() {
        let mut c = Config::default();
        assert!(c.validate().iter().all(|p| !p.contains("loop_priority")));
        c.media.loop_priority = 99;
        assert!(c.validate().iter().all(|p| !p.contains("loop_priority")));
        c.media.loop_priority = 100;
        assert!(c
            .validate()
            .iter()
            .any(|p| p.contains("media.loop_priority")));
    }

    #[test]
    fn roles_other_than_all_need_redis() {
        let mut c = Config::default();
        c.cluster.role = NodeRole::Media;
        assert!(
            c.validate().iter().any(|p| p.contains("needs --redis")),
            "{:?}",
            c.validate()
        );
        c.redis = Some("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/sportello".into());
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        c.cluster.node_ttl_ms = c.cluster.heartbeat_ms;
        assert!(c.validate().iter().any(|p| p.contains("node_ttl_ms")));
    }
}
