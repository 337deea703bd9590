//! `[[vip]]`: unique VIPs, usable addresses, table sizes, backend families and duplicates.

use super::*;

/// A map hashed with foldhash: keyed by 1,000 VIPs' names and addresses at every check.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl Audit<'_> {
    /// Every VIP: unique names and endpoints, then each VIP's own checks (taken from `last`
    /// where they hold, and kept there for the next check). The VIPs in file order, or `None`
    /// if one has no model form.
    pub(super) fn vips(
        &mut self,
        file: &ConfigFile,
        thresholds: &AuditThresholds,
        known: &KnownCounts,
        last: Option<&mut Recheck>,
    ) -> Option<Vec<Arc<VipModel>>> {
        let (origins, mut last) = match last {
            Some(Recheck { reparse, vips }) => (reparse.origins(), Some(vips)),
            None => (&[][..], None),
        };
        let mut models = Vec::with_capacity(file.vip.len());
        let count = file.vip.len();
        let mut names: FastMap<&str, usize> =
            FastMap::with_capacity_and_hasher(count, <_>::default());
        let mut keys: FastMap<(IpAddr, u16, Protocol), usize> =
            FastMap::with_capacity_and_hasher(count, <_>::default());
        // The first VIP of each address, by address: a lookup per backend, not a scan of
        // every VIP (100,000 backends and 1,000 VIPs).
        let mut vip_addresses: FastMap<IpAddr, &str> =
            FastMap::with_capacity_and_hasher(count, <_>::default());
        for vip in file.vip.iter().rev() {
            let vip = vip.get_ref();
            vip_addresses.insert(vip.address.get_ref().0, vip.name.get_ref().0.as_str());
        }
        let surroundings = last
            .as_ref()
            .map_or(0, |_| reuse::surroundings(file, thresholds));
        let mut kept = match last.as_deref_mut() {
            Some(last) => last.candidates(file, origins, surroundings),
            None => Vec::new(),
        };
        // Building every VIP's table is most of a config's check: only the tables `known`
        // lacks are built, a thread per CPU, for the VIPs checked again.
        let again: Vec<usize> = (0..file.vip.len())
            .filter(|&i| kept.get(i).is_none_or(Option::is_none))
            .collect();
        let mut effects: Vec<Option<_>> = (0..file.vip.len()).map(|_| None).collect();
        let built = crate::parallel::map(&again, |&i| {
            Self::table_effect(file.vip[i].get_ref(), known)
        });
        for (i, effect) in again.into_iter().zip(built) {
            effects[i] = Some(effect);
        }
        for (i, spanned) in file.vip.iter().enumerate() {
            let vip = spanned.get_ref();
            let name = vip.name.get_ref().0.as_str();
            if let Some(&first) = names.get(name) {
                self.report(
                    &DUPLICATE_VIP,
                    vip.name.span(),
                    format!("vip[{i}].name"),
                    format!("vip name \"{name}\" is used twice (first by vip[{first}])"),
                    "give every VIP a unique name: counters, logs and other verbs refer to VIPs by \
                     name",
                );
            } else {
                names.insert(name, i);
            }
            let key = (
                vip.address.get_ref().0,
                *vip.port.get_ref(),
                *vip.protocol.get_ref(),
            );
            if let Some(&first) = keys.get(&key) {
                let other = file.vip[first].get_ref().name.get_ref().0.as_str();
                self.report(
                    &DUPLICATE_VIP,
                    vip.address.span(),
                    format!("vip[{i}].address"),
                    format!(
                        "vip \"{name}\" has the same address, port and protocol as vip \"{other}\" \
                         ({})",
                        endpoint(key.0, key.1, key.2)
                    ),
                    "change the address, port or protocol of one of them, or merge their backends \
                     into one VIP",
                );
            } else {
                keys.insert(key, i);
            }
            let reused = (kept.get_mut(i).and_then(Option::take))
                .filter(|(checked, _)| checked.holds_after(&self.missing_sources));
            let (model, counts) = match reused {
                Some((checked, by)) => {
                    let checked = self.take_checked(checked, spanned, by);
                    let results = (checked.model.clone(), checked.counts.clone());
                    if let Some(last) = last.as_deref_mut() {
                        last.keep(checked, false);
                    }
                    results
                }
                None => {
                    let (effect, counts) =
                        (effects[i].take()).unwrap_or_else(|| Self::table_effect(vip, known));
                    let (findings, missing_before) =
                        (self.findings.len(), self.missing_sources.clone());
                    self.wanted_sources.clear();
                    let model = self
                        .vip(
                            i,
                            spanned,
                            effect,
                            &vip_addresses,
                            file.global.get_ref(),
                            thresholds,
                        )
                        .map(Arc::new);
                    if let Some(last) = last.as_deref_mut() {
                        last.keep(
                            CheckedVip {
                                file: spanned.clone(),
                                surroundings,
                                line: match self.findings.len() > findings {
                                    true => self.source.position(spanned.span().start).0,
                                    false => 0,
                                },
                                reported_before: (self.wanted_sources.iter())
                                    .map(|source| missing_before.contains(source))
                                    .collect(),
                                wanted_sources: std::mem::take(&mut self.wanted_sources),
                                findings: self.findings[findings..].to_vec(),
                                spans: self.spans[findings..].to_vec(),
                                model: model.clone(),
                                counts: counts.clone(),
                            },
                            true,
                        );
                    }
                    (model, counts)
                }
            };
            if let Some((inputs, counts)) = counts {
                self.counted.insert_inputs(inputs, counts);
            }
            models.push(model);
        }
        models.into_iter().collect()
    }

    fn vip(
        &mut self,
        i: usize,
        spanned: &Spanned<VipFile>,
        effect: Option<Effect>,
        vip_addresses: &FastMap<IpAddr, &str>,
        global: &GlobalFile,
        thresholds: &AuditThresholds,
    ) -> Option<VipModel> {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let address = vip.address.get_ref().0;
        if let Some(why) = unusable(address) {
            self.report(
                &UNUSABLE_ADDRESS,
                vip.address.span(),
                format!("vip[{i}].address"),
                format!("vip \"{name}\" address {address} is {why}: no client can reach it"),
                "use a unicast address that routes to this host",
            );
        }
        self.table_size(i, spanned);
        let forwarding = value(&vip.forwarding).unwrap_or_default();
        let entries: Vec<Entry> = vip.backend.iter().map(|b| entry(b.get_ref())).collect();
        let mut backends = Vec::with_capacity(vip.backend.len());
        let mut earlier = EarlierEntries::default();
        for (j, backend) in vip.backend.iter().enumerate() {
            let field = |name: &str| format!("vip[{i}].backend[{j}].{name}");
            let table = backend.span();
            let backend = backend.get_ref();
            let at = backend.address.span();
            let addr = backend.address.get_ref().0;
            if let Some(why) = unusable(addr) {
                self.report(
                    &UNUSABLE_ADDRESS,
                    at.clone(),
                    field("address"),
                    format!("backend {addr} of vip \"{name}\" is {why}"),
                    "use the backend's own unicast address",
                );
            }
            if let Some(first) = earlier.first_same_server(j, &entries, forwarding) {
                self.same_server(i, j, name, first, &vip.backend, &entries);
            }
            if let Some(other) = vip_addresses.get(&addr) {
                self.report(
                    &BACKEND_IS_VIP,
                    at.clone(),
                    field("address"),
                    format!("backend {addr} of vip \"{name}\" is the address of vip \"{other}\""),
                    "use the backend's own address: packets sent to a VIP address come back to \
                     xlb instead of reaching a server",
                );
            }
            self.family(i, j, name, address, forwarding, backend, global);
            match &backend.mac {
                None => {
                    let next_hop = match forwarding {
                        Forwarding::Dsr => format!(
                            "the backend's own MAC (on the backend: `ip link`; from here: `ip \
                             neigh show {addr}`)"
                        ),
                        Forwarding::Ipip => format!(
                            "the MAC of the next hop towards {addr} (`ip route get {addr}`, then \
                             `ip neigh`)"
                        ),
                    };
                    self.report(
                        &MISSING_MAC,
                        table,
                        field("mac"),
                        format!("backend {addr} of vip \"{name}\" has no mac"),
                        format!("add mac = \"xx:xx:xx:xx:xx:xx\": {next_hop}"),
                    );
                }
                Some(mac) => {
                    if let Some(why) = unusable_mac(mac.get_ref().0) {
                        self.report(
                            &UNUSABLE_ADDRESS,
                            mac.span(),
                            field("mac"),
                            format!("mac of backend {addr} of vip \"{name}\" is {why}"),
                            "use the unicast MAC the frames must go to (`ip neigh`)",
                        );
                    }
                }
            }
            let health = backend
                .health
                .as_ref()
                .map(|health| self.health(i, j, *vip.port.get_ref(), health));
            backends.push(backend.mac.as_ref().map(|mac| BackendModel {
                address: addr,
                weight: weight(backend),
                mac: mac.get_ref().0,
                health,
            }));
        }
        if value(&vip.hash) == Some(HashMode::Source)
            && vip.backend.len() >= 2
            && value(&vip.source_hash_checked) != Some(true)
        {
            self.report(
                &SOURCE_HASH_CLIENTS,
                span_or(&vip.hash, spanned.span()),
                format!("vip[{i}].hash"),
                format!(
                    "vip \"{name}\" hashes on the client address alone: its {} backends share \
                     its clients by address, so clients behind a few NAT or proxy addresses \
                     land on a few servers",
                    vip.backend.len()
                ),
                "use hash = \"5-tuple\" unless clients must stick to one server; otherwise \
                 check the spread over real clients with `xlb plan FILE --clients ADDRESSES` \
                 (or --pcap CAPTURE) and then set source_hash_checked = true on the VIP",
            );
        }
        self.weights(i, spanned, &entries, effect, thresholds);
        Some(VipModel {
            name: name.to_owned(),
            address,
            port: *vip.port.get_ref(),
            protocol: *vip.protocol.get_ref(),
            forwarding,
            hash: value(&vip.hash).unwrap_or_default(),
            table_size: maglev_size(vip),
            backends: backends.into_iter().collect::<Option<_>>()?,
        })
    }

    /// XLB005: backend `j` reaches the same server as `first`, the first earlier entry of its
    /// VIP that does, for the reason given.
    fn same_server(
        &mut self,
        i: usize,
        j: usize,
        name: &str,
        (first, why): (usize, SameServer),
        backends: &[Spanned<BackendFile>],
        entries: &[Entry],
    ) {
        let backend = backends[j].get_ref();
        let addr = entries[j].address;
        let other = entries[first].address;
        let (span, field, message, fix) = match why {
            SameServer::Address if addr == other => (
                backend.address.span(),
                "address",
                format!(
                    "backend {addr} appears twice in vip \"{name}\" (first as backend[{first}])"
                ),
                "remove one of the entries or merge their weights".to_owned(),
            ),
            SameServer::Address => (
                backend.address.span(),
                "address",
                format!(
                    "backend {addr} of vip \"{name}\" is backend[{first}] ({other}) written \
                     another way: both entries reach the same server"
                ),
                format!(
                    "remove one of the entries or merge their weights, and write the address \
                     once, as {}",
                    addr.to_canonical()
                ),
            ),
            SameServer::Mac => (
                backend
                    .mac
                    .as_ref()
                    .map_or(backends[j].span(), Spanned::span),
                "mac",
                format!(
                    "backend {addr} of vip \"{name}\" has the MAC of backend[{first}] ({other}): \
                     dsr sends the frame to whoever owns that MAC, so both entries are one server"
                ),
                format!(
                    "set the MAC of {addr}'s own interface (`ip neigh show {addr}`), or remove \
                     the entry if {addr} is another address of the same server"
                ),
            ),
        };
        self.report(
            &DUPLICATE_BACKEND,
            span,
            format!("vip[{i}].backend[{j}].{field}"),
            message,
            fix,
        );
    }

    fn table_size(&mut self, i: usize, spanned: &Spanned<VipFile>) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let size = maglev_size(vip);
        let span = span_or(&vip.table_size, spanned.span());
        let field = format!("vip[{i}].table_size");
        let backends = vip.backend.len();
        if size > MAX_TABLE_SIZE {
            self.report(
                &TABLE_SIZE_OUT_OF_RANGE,
                span,
                field,
                format!(
                    "table_size {size} of vip \"{name}\" is above the data plane's maximum of \
                     {MAX_TABLE_SIZE}"
                ),
                format!(
                    "use a prime of at most {MAX_TABLE_SIZE}, e.g. {DEFAULT_TABLE_SIZE} (room \
                     for {} backends)",
                    DEFAULT_TABLE_SIZE / SLOTS_PER_BACKEND
                ),
            );
            return;
        }
        if !is_prime(size) {
            self.report(
                &TABLE_SIZE_NOT_PRIME,
                span.clone(),
                field.clone(),
                format!("table_size {size} of vip \"{name}\" is not prime"),
                format!(
                    "use {}, the next prime: Maglev needs a prime size so that every backend's \
                     walk covers the whole table",
                    prime_at_least(size.saturating_add(1))
                ),
            );
        }
        let wanted = u32::try_from(backends)
            .unwrap_or(u32::MAX)
            .saturating_mul(SLOTS_PER_BACKEND);
        if backends > size as usize {
            self.report(
                &TABLE_SIZE_OUT_OF_RANGE,
                span,
                field,
                format!(
                    "table_size {size} of vip \"{name}\" has fewer slots than its {backends} \
                     backends"
                ),
                format!(
                    "use a prime of at least {wanted} (100 slots per backend), e.g. {}",
                    prime_at_least(wanted)
                ),
            );
        } else if size < wanted {
            self.report(
                &TABLE_TOO_SMALL,
                span,
                field,
                format!(
                    "table_size {size} of vip \"{name}\" is below 100 slots for each of its \
                     {backends} backends: their shares of the traffic will drift from their \
                     weights"
                ),
                format!(
                    "use a prime of at least {wanted}, e.g. {}",
                    prime_at_least(wanted)
                ),
            );
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one backend's context, used once"
    )]
    fn family(
        &mut self,
        i: usize,
        j: usize,
        name: &str,
        vip_address: IpAddr,
        forwarding: Forwarding,
        backend: &BackendFile,
        global: &GlobalFile,
    ) {
        let addr = backend.address.get_ref().0;
        // Named only for a finding: most backends have none.
        let field = || format!("vip[{i}].backend[{j}].address");
        match forwarding {
            Forwarding::Dsr if addr.is_ipv4() != vip_address.is_ipv4() => {
                let other = if addr.is_ipv4() {
                    "ipip_source_v4"
                } else {
                    "ipip_source_v6"
                };
                self.report(
                    &FAMILY_MISMATCH,
                    backend.address.span(),
                    field(),
                    format!(
                        "backend {addr} of vip \"{name}\" is {} but the VIP is {}: dsr cannot \
                         change address families",
                        family(addr),
                        family(vip_address)
                    ),
                    format!(
                        "use an {} backend, or set forwarding = \"ipip\" on the VIP (with \
                         global.{other})",
                        family(vip_address)
                    ),
                );
            }
            Forwarding::Ipip => {
                let (configured, source, example) = match addr {
                    IpAddr::V4(_) => (
                        global.ipip_source_v4.is_some(),
                        "ipip_source_v4",
                        "198.18.0.2",
                    ),
                    IpAddr::V6(_) => (
                        global.ipip_source_v6.is_some(),
                        "ipip_source_v6",
                        "2001:db8::2",
                    ),
                };
                if !configured && !self.wanted_sources.contains(&source) {
                    self.wanted_sources.push(source);
                }
                if !configured && !self.missing_sources.contains(&source) {
                    self.missing_sources.push(source);
                    self.report(
                        &FAMILY_MISMATCH,
                        backend.address.span(),
                        field(),
                        format!(
                            "vip \"{name}\" tunnels to {} backend {addr}, but global.{source} is \
                             not set",
                            family(addr)
                        ),
                        format!(
                            "set global.{source} (e.g. \"{example}\") to an address of this host \
                             that {addr} can reach: it is the tunnel's outer source"
                        ),
                    );
                }
            }
            Forwarding::Dsr => {}
        }
    }
}

/// The first entry of a VIP with each canonical address and each MAC so far: an entry reaches
/// the same server as an earlier one only through one of those two (`effect::same_server`
/// matches on either), so XLB005 looks at two entries, not every earlier one (100 backends
/// make 4,950 pairs per VIP).
#[derive(Default)]
struct EarlierEntries {
    by_address: HashMap<IpAddr, usize>,
    by_mac: HashMap<[u8; 6], usize>,
}

impl EarlierEntries {
    /// The first entry before `j` that reaches the same server as entry `j`, and why; records
    /// entry `j` (call it for each entry in order).
    fn first_same_server(
        &mut self,
        j: usize,
        entries: &[Entry],
        forwarding: Forwarding,
    ) -> Option<(usize, SameServer)> {
        let entry = &entries[j];
        let address = *self
            .by_address
            .entry(entry.address.to_canonical())
            .or_insert(j);
        let mac = entry
            .mac
            .map_or(j, |mac| *self.by_mac.entry(mac).or_insert(j));
        [address.min(mac), address.max(mac)]
            .into_iter()
            .filter(|&k| k < j)
            .find_map(|k| effect::same_server(&entries[k], entry, forwarding).map(|why| (k, why)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that the first earlier entry of the same server, and why, is what a scan of every
    /// earlier entry finds, for addresses written twice (one as IPv4-mapped IPv6), shared MACs
    /// and both together, under both forwarding modes.
    #[test]
    fn the_first_entry_of_a_server_is_the_one_a_full_scan_finds() {
        let v4 = |last: u8| IpAddr::from([10, 0, 0, last]);
        let mapped =
            |last: u8| IpAddr::V6(std::net::Ipv4Addr::from([10, 0, 0, last]).to_ipv6_mapped());
        let mac = |last: u8| Some([2, 0, 0, 0, 0, last]);
        let entries = [
            Entry {
                address: v4(1),
                mac: mac(1),
            },
            Entry {
                address: v4(2),
                mac: mac(2),
            },
            Entry {
                address: v4(3),
                mac: mac(2),
            },
            Entry {
                address: mapped(1),
                mac: mac(3),
            },
            Entry {
                address: v4(4),
                mac: None,
            },
            Entry {
                address: v4(2),
                mac: mac(1),
            },
            Entry {
                address: v4(5),
                mac: mac(3),
            },
            Entry {
                address: mapped(4),
                mac: mac(4),
            },
            Entry {
                address: v4(6),
                mac: None,
            },
            Entry {
                address: v4(3),
                mac: mac(4),
            },
        ];
        for forwarding in [Forwarding::Dsr, Forwarding::Ipip] {
            let mut earlier = EarlierEntries::default();
            let found: Vec<_> = (0..entries.len())
                .map(|j| earlier.first_same_server(j, &entries, forwarding))
                .collect();
            let scanned: Vec<_> = (0..entries.len())
                .map(|j| {
                    (0..j).find_map(|k| {
                        effect::same_server(&entries[k], &entries[j], forwarding)
                            .map(|why| (k, why))
                    })
                })
                .collect();
            assert_eq!(found, scanned, "{forwarding:?}");
            assert!(found.iter().flatten().count() >= 4, "{found:?}");
        }
    }
}
