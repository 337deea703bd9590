//! The catalogue of checks: every rule's stable id, name, severity and purpose.
//!
//! Ids never change meaning, so scripts and documentation can rely on them. XLB017..XLB020 are
//! kept free for rules added elsewhere; the further rules here start at XLB021.

use super::diagnostic::{Rule, Severity};

const fn error(id: &'static str, name: &'static str, summary: &'static str) -> Rule {
    Rule {
        id,
        name,
        severity: Severity::Error,
        summary,
    }
}

const fn warning(id: &'static str, name: &'static str, summary: &'static str) -> Rule {
    Rule {
        id,
        name,
        severity: Severity::Warning,
        summary,
    }
}

pub const SYNTAX: Rule = error(
    "XLB000",
    "syntax",
    "The file is not valid TOML, or a field is unknown, missing, of the wrong type or has a \
     value that is not allowed (an enum value, an address, a MAC, a name).",
);
pub const SINGLE_BACKEND: Rule = warning(
    "XLB001",
    "single-backend",
    "A VIP's table sends new flows to fewer servers than audit.min_backends: one failure takes \
     it down.",
);
pub const DOMINANT_BACKEND: Rule = warning(
    "XLB002",
    "dominant-backend",
    "One server takes more than audit.max_backend_share of a VIP's new flows (its slots of the \
     table an apply would build) while others serve too: it takes most of the load and most of \
     the damage when it fails.",
);
pub const ALL_WEIGHT_ON_ONE: Rule = error(
    "XLB003",
    "all-on-one-server",
    "A VIP names two or more backends but the table an apply would build sends every new flow \
     to one server: only one weighs more than 0, its entries are one server written twice, or \
     the table is too small for the others' weights. The outage xlb was born from.",
);
pub const ZERO_TOTAL_WEIGHT: Rule = error(
    "XLB004",
    "zero-total-weight",
    "A VIP has no backends, or all of them weigh 0: every packet for it would be dropped.",
);
pub const DUPLICATE_BACKEND: Rule = error(
    "XLB005",
    "duplicate-backend",
    "Two backend entries of one VIP reach the same server: the same address (also when written \
     two ways, e.g. IPv4 and IPv4-mapped IPv6), or on a dsr VIP the same MAC.",
);
pub const BACKEND_IS_VIP: Rule = error(
    "XLB006",
    "backend-is-vip",
    "A backend address is also a VIP address: packets would loop through the load balancer.",
);
pub const TABLE_SIZE_NOT_PRIME: Rule = error(
    "XLB007",
    "table-size-not-prime",
    "A VIP's Maglev table size is not prime, so backends' permutations would not cover the table.",
);
pub const TABLE_TOO_SMALL: Rule = warning(
    "XLB008",
    "table-too-small",
    "A VIP's table has fewer than 100 slots per backend, so shares drift from the weights and \
     more flows move when a backend changes.",
);
pub const UNKNOWN_INTERFACE: Rule = error(
    "XLB009",
    "unknown-interface",
    "global.interface does not exist on this host.",
);
pub const FAMILY_MISMATCH: Rule = error(
    "XLB010",
    "family-mismatch",
    "A dsr VIP has a backend of the other address family (dsr cannot change families), or an \
     ipip VIP has a backend whose family has no tunnel source (global.ipip_source_v4/v6).",
);
pub const DUPLICATE_VIP: Rule = error(
    "XLB011",
    "duplicate-vip",
    "Two VIPs share a name, or the same address, port and protocol (a port-0 VIP beside \
     specific ports is fine: port 0 is the fallback).",
);
pub const MISSING_MAC: Rule = error(
    "XLB012",
    "missing-mac",
    "A backend has no mac: xlb rewrites the destination MAC and cannot learn it.",
);
pub const BAD_HEALTH_CHECK: Rule = error(
    "XLB013",
    "bad-health-check",
    "A health check cannot work: timeout not below interval, rise or fall 0, http settings on a \
     tcp check, a bad path or status, or no port to probe.",
);
pub const BAD_GLOBAL: Rule = error(
    "XLB014",
    "bad-global",
    "A [global] or [audit] setting is out of range: flow_table_size, mtu, pin_path, \
     metrics_address, drain_timeout_seconds, max_backend_share.",
);
pub const BAD_ALERTS: Rule = error(
    "XLB015",
    "bad-alerts",
    "An [alerts] setting is out of range (window_seconds, skew_factor, max_share, min_healthy, \
     min_new_flows, flood_factor, flood_min_rate, max_evicted_proven) or its command is \
     empty: the daemon would alert on noise, never alert, or fail to notify.",
);
pub const BAD_BGP: Rule = error(
    "XLB016",
    "bad-bgp",
    "A [bgp] setting cannot work: routes_file or socket not an absolute file path (or holding \
     a quote or blank BIRD cannot take), an empty reload_command, or both socket and \
     reload_command given.",
);
pub const UNREADABLE_FILE: Rule = error(
    "XLB021",
    "unreadable-file",
    "The config file cannot be read (it does not exist, no permission, not UTF-8).",
);
pub const TABLE_SIZE_OUT_OF_RANGE: Rule = error(
    "XLB022",
    "table-size-out-of-range",
    "A VIP's table size is above the data plane's maximum (2^24) or below its backend count, so \
     no Maglev table can be built.",
);
pub const UNUSABLE_ADDRESS: Rule = error(
    "XLB023",
    "unusable-address",
    "An address or MAC that cannot carry traffic: unspecified, loopback, multicast or broadcast.",
);

pub const CONTROL_CHARACTER: Rule = error(
    "XLB024",
    "control-character",
    "A value xlb writes into a file or hands to a command (interface, pin_path, routes_file, \
     socket, reload_command, alerts.command, a health check path) holds a control character \
     such as a line feed or a NUL: it would inject lines into BIRD's config, a request or a log.",
);
pub const METRICS_EXPOSED: Rule = warning(
    "XLB025",
    "metrics-exposed",
    "global.metrics_address is not a loopback address: the metrics endpoint has no \
     authentication, so every host that reaches it reads the VIPs, backends and their health, \
     and can spend the daemon's time.",
);
pub const NO_SLOT: Rule = error(
    "XLB026",
    "no-slot",
    "A backend weighs more than 0 but the VIP's table, too small for the spread of its weights, \
     gives it no slot: it would take no new flow although the config says it should.",
);
pub const SOURCE_HASH_CLIENTS: Rule = warning(
    "XLB027",
    "source-hash-clients",
    "A VIP with several backends hashes on the client's address alone: its spread follows the \
     client addresses, so clients behind a few NAT or proxy addresses land on a few servers.",
);
pub const CAPACITY: Rule = error(
    "XLB028",
    "capacity",
    "The config does not fit its [capacity] (more VIPs than capacity.vips, a VIP with more \
     backends than capacity.backends_per_vip, a table_size above capacity.table_slots), or a \
     [capacity] value is out of range: the program `xlb run` loads could not hold it.",
);

/// Every rule, in id order.
pub const RULES: &[Rule] = &[
    SYNTAX,
    SINGLE_BACKEND,
    DOMINANT_BACKEND,
    ALL_WEIGHT_ON_ONE,
    ZERO_TOTAL_WEIGHT,
    DUPLICATE_BACKEND,
    BACKEND_IS_VIP,
    TABLE_SIZE_NOT_PRIME,
    TABLE_TOO_SMALL,
    UNKNOWN_INTERFACE,
    FAMILY_MISMATCH,
    DUPLICATE_VIP,
    MISSING_MAC,
    BAD_HEALTH_CHECK,
    BAD_GLOBAL,
    BAD_ALERTS,
    BAD_BGP,
    UNREADABLE_FILE,
    TABLE_SIZE_OUT_OF_RANGE,
    UNUSABLE_ADDRESS,
    CONTROL_CHARACTER,
    METRICS_EXPOSED,
    NO_SLOT,
    SOURCE_HASH_CLIENTS,
    CAPACITY,
];

/// The rule with this id (`XLB003`, case-insensitive) or name (`all-on-one-server`).
pub fn find(id_or_name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|rule| rule.id.eq_ignore_ascii_case(id_or_name) || rule.name == id_or_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_and_names_are_unique_and_ordered() {
        // Test that no two rules share an id or a name, and that RULES lists them by id.
        for pair in RULES.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "{} before {}",
                pair[0].id,
                pair[1].id
            );
        }
        for (i, rule) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|other| other.name != rule.name),
                "{} is used twice",
                rule.name
            );
        }
    }

    #[test]
    fn rules_are_found_by_id_or_name() {
        // Test that `find` accepts either form.
        assert_eq!(find("xlb003"), Some(&ALL_WEIGHT_ON_ONE));
        assert_eq!(find("all-on-one-server"), Some(&ALL_WEIGHT_ON_ONE));
        assert_eq!(find("XLB999"), None);
    }
}
