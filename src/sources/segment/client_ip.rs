//! Which address becomes a message's `context.ip` when the `segment` source trusts
//! `X-Forwarded-For` (`trust_forwarded_for`), and the `trusted_proxies` networks that decide
//! whether it does.
//!
//! The Conversions API matches `client_ip_address` against Meta's own view of the user, so the
//! choice follows Meta's Parameter Builder library, which server code uses to fill that field:
//! <https://github.com/facebook/capi-param-builder/blob/b0b6f0b19e042ff0ae723f684495dde8935a6ff0/nodejs/capi-param-builder/src/ParamBuilder.js>
//! (`_isPrivateIPv4`, `_isPrivateIPv6`, `_isPublicIp`, `_getClientIpFromRequest`, `_getClientIp`;
//! `php/capi-param-builder/src/ParamBuilder.php` does the same with PHP's `filter_var`, whose
//! reserved ranges vary with the PHP version, so the Node one with its explicit lists is the
//! reference). There:
//!
//! - only `X-Forwarded-For` and the socket's peer are read (no `Forwarded`, no `X-Real-IP`);
//! - an address counts only if it is public: not 10/8, 172.16/12, 192.168/16, loopback 127/8,
//!   link-local 169.254/16, `::1`, link-local fe80::/10, unique-local fc00::/7. Documentation
//!   ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32) and CGNAT 100.64/10 are
//!   public to it; so they are here. We add the unspecified `0.0.0.0` and `::` (the PHP version
//!   of the library rejects them too, and no client sends from them);
//! - an IPv4-mapped address (`::ffff:10.0.0.1`) is judged as the IPv4 address it carries (the
//!   library's text prefix tests would call that one public);
//! - a hop is used only when it parses as a bare address: `1.2.3.4:80`, `[2001:db8::1]:443`,
//!   `unknown` are not addresses to it, so they are skipped here;
//! - a public IPv6 address wins over a public IPv4 one (there, between its `_fbi` cookie and the
//!   request's address), and a request whose address is not public gives no IP at all.
//!
//! Its request address is the first hop when that is public, else the peer. We apply the same
//! test to every hop instead of the first only, because with `trusted_proxies` (which it does not
//! have) the hops your own proxies add are known and skipped, and a private first hop (a
//! corporate proxy's) should not hide a public one behind it: the first public IPv6 hop, else the
//! first public IPv4 hop, else the peer when it is public, else none. Like Meta's, this reads the
//! client end of the header, which the client can write: it serves attribution, not access
//! control.

use std::net::IpAddr;

/// One entry of `trusted_proxies`: a network, or one address (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address. Host bits are allowed and ignored
    /// (`10.1.2.3/8` is 10/8), as nginx's `set_real_ip_from` allows them.
    fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    let family = if network.is_ipv4() { "IPv4" } else { "IPv6" };
                    format!("{p:?} is not an {family} prefix length (0 to {max})")
                })?,
        };
        // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d; addresses are compared in
        // their IPv4 form, so a network written that way is too.
        if let IpAddr::V6(v6) = network
            && prefix >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Ok(Cidr {
                network: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(Cidr { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The `trusted_proxies` setting, checked: each entry's error names it and says what to write.
pub(super) fn trusted_proxies(entries: &[String]) -> Result<Vec<Cidr>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            Cidr::parse(entry.trim()).map_err(|why| {
                format!(
                    "trusted_proxies[{i}]: {entry:?} is not a CIDR: {why}; write a network such as \"10.0.0.0/8\" or \"2001:db8::/32\", or one address such as \"10.0.0.1\""
                )
            })
        })
        .collect()
}

/// Meta's test for an address worth sending (see the module comment).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unicast_link_local()
                || v6.is_unique_local())
        }
    }
}

/// The client's address: from the `X-Forwarded-For` lines (in the order received) when `peer`
/// may set them, else `peer`; `None` when nothing public is left (Meta then sends no IP either).
/// The rule and its source are in the module comment.
pub(super) fn choose<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted_proxies: &[Cidr],
) -> Option<IpAddr> {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    // Compared in IPv4 form: a dual-stack listener sees an IPv4 proxy as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    // With no list, every peer may set the header, as `trust_forwarded_for` always meant.
    if trusted_proxies.is_empty() || trusted(peer) {
        let mut first_ipv4 = None;
        let hops = forwarded_for
            .into_iter()
            .flat_map(|line| line.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .filter(|ip| is_public(*ip) && !trusted(*ip));
        for ip in hops {
            match ip {
                IpAddr::V6(_) => return Some(ip),
                IpAddr::V4(_) => {
                    first_ipv4.get_or_insert(ip);
                }
            }
        }
        if first_ipv4.is_some() {
            return first_ipv4;
        }
    }
    is_public(peer).then_some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(entries: &[&str]) -> Vec<Cidr> {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        trusted_proxies(&entries).unwrap()
    }

    /// `choose` for one header line, shown as text (None as "none").
    fn pick(peer: &str, header: &str, trusted: &[&str]) -> String {
        choose(ip(peer), [header], &nets(trusted))
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn the_issues_chain_gives_the_public_ipv6_hop() {
        // 10.0.0.1 is private, 203.0.113.9 one of our proxies; 2001:db8::1 is left, and it
        // would also win over a public IPv4 hop.
        let trusted = ["127.0.0.1", "203.0.113.0/24"];
        assert_eq!(
            pick("127.0.0.1", "10.0.0.1, 2001:db8::1, 203.0.113.9", &trusted),
            "2001:db8::1"
        );
        assert_eq!(
            pick("127.0.0.1", "10.0.0.1, 2001:db8::1, 203.0.113.9", &[]),
            "2001:db8::1"
        );
    }

    #[test]
    fn private_loopback_link_local_unique_local_and_unspecified_hops_are_skipped() {
        for skipped in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "::",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(
                pick("10.9.9.9", &format!("{skipped}, 198.51.100.4"), &[]),
                "198.51.100.4",
                "{skipped}"
            );
        }
    }

    #[test]
    fn what_meta_counts_as_public_is_kept() {
        // Its lists leave out documentation, CGNAT and the edges of the private ranges.
        for kept in [
            "172.15.0.1",
            "172.32.0.1",
            "100.64.0.1",
            "192.0.2.1",
            "203.0.113.9",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert_eq!(pick("10.9.9.9", kept, &[]), kept);
        }
    }

    #[test]
    fn a_public_ipv6_hop_wins_over_an_earlier_public_ipv4_hop() {
        assert_eq!(
            pick(
                "10.0.0.2",
                "198.51.100.4, 2001:4860::8888, 2001:db8::2",
                &[]
            ),
            "2001:4860::8888"
        );
        assert_eq!(
            pick("10.0.0.2", "198.51.100.4, 192.0.2.7", &[]),
            "198.51.100.4",
            "among IPv4 hops, the client's end"
        );
    }

    #[test]
    fn hops_in_trusted_proxies_are_skipped() {
        let trusted = ["10.0.0.0/8", "198.51.100.0/24", "2001:db8:cafe::/48"];
        assert_eq!(
            pick(
                "10.0.0.2",
                "2001:db8:cafe::7, 203.0.113.5, 198.51.100.4",
                &trusted
            ),
            "203.0.113.5"
        );
    }

    #[test]
    fn a_peer_outside_trusted_proxies_cannot_set_the_header() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(pick("192.0.2.50", "203.0.113.5", &trusted), "192.0.2.50");
        assert_eq!(pick("10.0.0.2", "203.0.113.5", &trusted), "203.0.113.5");
        // An IPv4 proxy seen by a dual-stack listener.
        assert_eq!(
            pick("::ffff:10.0.0.2", "203.0.113.5", &trusted),
            "203.0.113.5"
        );
    }

    #[test]
    fn without_a_public_hop_the_peer_is_used_only_when_public() {
        assert_eq!(pick("192.0.2.50", "10.0.0.1, fe80::1", &[]), "192.0.2.50");
        assert_eq!(pick("192.0.2.50", "", &[]), "192.0.2.50");
        assert_eq!(pick("::ffff:192.0.2.50", "", &[]), "192.0.2.50");
        assert_eq!(pick("127.0.0.1", "10.0.0.1", &[]), "none");
        assert_eq!(choose(ip("10.0.0.3"), [], &[]), None);
    }

    #[test]
    fn malformed_hops_and_port_forms_are_skipped_as_meta_does() {
        assert_eq!(
            pick(
                "10.0.0.2",
                "unknown, [2001:db8::1]:443, [2001:db8::1], 203.0.113.9:80, 2001:db8::1%eth0, 1.2.3, , 198.51.100.4",
                &[]
            ),
            "198.51.100.4"
        );
    }

    #[test]
    fn every_header_line_is_read_in_order() {
        let lines = ["10.0.0.1, 198.51.100.4", "2001:db8::9"];
        assert_eq!(choose(ip("10.0.0.2"), lines, &[]), Some(ip("2001:db8::9")));
    }

    #[test]
    fn cidrs_parse_with_bare_addresses_as_single_hosts() {
        let n = nets(&[
            "10.0.0.0/8",
            "192.0.2.1",
            "2001:db8::/32",
            "::1",
            "0.0.0.0/0",
            "::ffff:10.1.0.0/112",
        ]);
        assert!(n[0].contains(ip("10.255.0.1")));
        assert!(!n[0].contains(ip("11.0.0.1")));
        assert!(n[1].contains(ip("192.0.2.1")));
        assert!(!n[1].contains(ip("192.0.2.2")));
        assert!(n[2].contains(ip("2001:db8:ffff::1")));
        assert!(!n[2].contains(ip("2001:db9::1")));
        assert!(n[3].contains(ip("::1")));
        assert!(!n[3].contains(ip("::2")));
        assert!(n[4].contains(ip("203.0.113.1")));
        assert!(
            !n[4].contains(ip("::1")),
            "an IPv4 network holds no IPv6 address"
        );
        assert!(
            n[5].contains(ip("10.1.2.3")),
            "written IPv4-mapped, compared as IPv4"
        );
        assert!(
            nets(&["10.1.2.3/8"])[0].contains(ip("10.9.9.9")),
            "host bits ignored"
        );
    }

    #[test]
    fn a_bad_entry_is_named_with_what_to_write() {
        let cases = [
            (
                vec!["10.0.0.0/8", "10.0.0.0/33"],
                "trusted_proxies[1]: \"10.0.0.0/33\" is not a CIDR: \"33\" is not an IPv4 prefix length (0 to 32)",
            ),
            (
                vec!["2001:db8::/129"],
                "trusted_proxies[0]: \"2001:db8::/129\" is not a CIDR: \"129\" is not an IPv6 prefix length (0 to 128)",
            ),
            (
                vec!["10.0.0/8"],
                "trusted_proxies[0]: \"10.0.0/8\" is not a CIDR: \"10.0.0\" is not an IP address",
            ),
            (vec!["10.0.0.0/+8"], "\"+8\" is not an IPv4 prefix length"),
            (vec!["10.0.0.0/"], "\"\" is not an IPv4 prefix length"),
            (
                vec!["proxy.internal"],
                "\"proxy.internal\" is not an IP address",
            ),
            (vec![""], "trusted_proxies[0]: \"\" is not a CIDR"),
        ];
        for (entries, expected) in cases {
            let entries: Vec<String> = entries.into_iter().map(String::from).collect();
            let err = trusted_proxies(&entries).unwrap_err();
            assert!(err.contains(expected), "{err}");
            assert!(
                err.contains("write a network such as \"10.0.0.0/8\""),
                "{err}"
            );
        }
    }
}
