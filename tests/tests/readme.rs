//! README's figures and lists checked against the code they describe: the flow table's
//! occupancy (derived here from the real flow hash and set layout) and the config rules that
//! exist.

use lb_common::{
    FlowKey,
    flow::{FLOW_WAYS, flow_set, flow_sets},
    flow_hash,
};
use lb_userspace::config::rules::RULES;

const README: &str = include_str!("../../README.md");

/// The share of `flows` concurrent random flows that find no slot in a flow table sized for
/// `table_flows`: each set holds [`FLOW_WAYS`] of the flows that hash into it, the rest wait.
fn share_without_a_slot(table_flows: u32, flows: u32, seed: u64) -> f64 {
    let sets = flow_sets(table_flows);
    let mut per_set = vec![0u32; sets as usize];
    let mut state = seed;
    for _ in 0..flows {
        // xorshift64: a fixed sequence of clients in 198.18.0.0/15 with random ports.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [a, b, c, d, e, f, g, h] = state.to_le_bytes();
        let mut key = FlowKey::v4(&[198, 18 | (a & 1), b, c], &[198, 18, 1, 10], 6);
        key.set_ports([d, e], [f, g | (h & 1)]);
        per_set[flow_set(flow_hash(&key, false), sets) as usize] += 1;
    }
    let waiting: u32 = per_set
        .iter()
        .map(|&n| n.saturating_sub(FLOW_WAYS as u32))
        .sum();
    f64::from(waiting) / f64::from(flows)
}

/// Test that README's flow-table occupancy figures hold for the real hash and set layout: at a
/// quarter of `flow_table_size` in concurrent flows about 1 in 7,000 flows has no slot, at half
/// about 1 in 120 (a Poisson model of 8-way sets gives 1 in 6,800 and 1 in 119), and that
/// README states exactly these figures.
#[test]
fn flow_table_occupancy_matches_the_readme() {
    const TABLE: u32 = 1 << 22;
    let quarter = share_without_a_slot(TABLE, TABLE / 4, 0x5eed_0001);
    let half = share_without_a_slot(TABLE, TABLE / 2, 0x5eed_0002);
    eprintln!(
        "no slot: 1 in {:.0} at a quarter, 1 in {:.0} at half",
        1.0 / quarter,
        1.0 / half
    );
    assert!(
        (1.0 / 9_500.0..1.0 / 5_000.0).contains(&quarter),
        "at a quarter 1 in {:.0} flows has no slot, README says about 1 in 7,000",
        1.0 / quarter
    );
    assert!(
        (1.0 / 135.0..1.0 / 105.0).contains(&half),
        "at half 1 in {:.0} flows has no slot, README says about 1 in 120",
        1.0 / half
    );
    let text = README.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains(
            "at a quarter of `flow_table_size` in concurrent flows about 1 in 7,000 flows has \
             no slot at a given moment, at half about 1 in 120"
        ),
        "README's flow-table figures differ from what this test derives"
    );
}

/// The rule ids that exist, as contiguous ranges: `XLB000-XLB016 and XLB021-XLB027`.
fn rule_ranges() -> String {
    let numbers: Vec<u32> = RULES
        .iter()
        .map(|rule| rule.id[3..].parse().expect("XLBnnn"))
        .collect();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for n in numbers {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => ranges.push((n, n)),
        }
    }
    ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                format!("XLB{first:03}")
            } else {
                format!("XLB{first:03}-XLB{last:03}")
            }
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Test that README names exactly the config rules that exist (ids in ranges), so it never
/// promises a rule `xlb validate` does not have.
#[test]
fn readme_lists_the_rules_that_exist() {
    let ranges = rule_ranges();
    let claim = format!("(rules {ranges};");
    assert!(
        README.contains(&claim),
        "README must list the rules as `{claim}` (what lb_userspace::config::rules::RULES holds)"
    );
    assert_eq!(
        README.matches("(rules XLB").count(),
        1,
        "README lists the rules more than once"
    );
}
