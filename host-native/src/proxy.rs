//! Client addresses behind reverse proxies. From a peer listed in
//! `server.trusted_proxies` (CIDRs), the client's address is taken from the
//! `Forwarded` or `X-Forwarded-For` header: walking the chain from the
//! nearest hop back, the first address that is not a trusted proxy. From
//! anyone else those headers are ignored (a client cannot choose its own
//! origin by sending them).

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address block: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n`, or a bare address (the whole address).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("`{s}` is not an address or a CIDR block");
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a.trim(), Some(b.trim().parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }

    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The trusted proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From `server.trusted_proxies`; an entry that does not parse is named.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| Cidr::parse(e).map_err(|why| format!("server.trusted_proxies: {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted
    /// proxy, then the nearest untrusted hop its headers name (`Forwarded`
    /// first, then `X-Forwarded-For`); `peer` when they name none.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for v in headers.get_all("forwarded") {
            let Ok(v) = v.to_str() else { continue };
            for element in v.split(',') {
                for pair in element.split(';') {
                    let Some((k, val)) = pair.trim().split_once('=') else { continue };
                    if k.trim().eq_ignore_ascii_case("for") {
                        if let Some(ip) = parse_node(val.trim().trim_matches('"')) {
                            hops.push(ip);
                        }
                    }
                }
            }
        }
        if hops.is_empty() {
            for v in headers.get_all("x-forwarded-for") {
                let Ok(v) = v.to_str() else { continue };
                hops.extend(v.split(',').filter_map(|h| parse_node(h.trim())));
            }
        }
        hops.into_iter().rev().find(|ip| !self.trusts(*ip)).unwrap_or(peer)
    }
}

/// An address from a forwarding header: `a.b.c.d`, `a.b.c.d:port`,
/// `[v6]`, `[v6]:port` or a bare v6.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn blocks_contain_what_they_should() {
        let c = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.1.0.9".parse().expect("ip")), "mapped v4 counts as v4");
        assert!(Cidr::parse("2001:db8::/32").expect("valid").contains("2001:db8:1::5".parse().expect("ip")));
        assert!(Cidr::parse("127.0.0.1").expect("valid").contains("127.0.0.1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("proxy").is_err());
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop_and_only_trusted_peers_are_believed() {
        let t = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).expect("valid");
        let (proxy, stranger) = ("127.0.0.1".parse().expect("ip"), "198.51.100.9".parse().expect("ip"));
        let xff = headers(&[("x-forwarded-for", "203.0.113.5, 192.0.2.1, 10.0.0.7")]);
        assert_eq!(t.client(proxy, &xff), "192.0.2.1".parse::<IpAddr>().expect("ip"), "a spoofed first hop is skipped");
        assert_eq!(t.client(stranger, &xff), stranger, "an untrusted peer's header is ignored");
        let fwd = headers(&[("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"")]);
        assert_eq!(t.client(proxy, &fwd), "2001:db8::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(t.client(proxy, &HeaderMap::new()), proxy, "no header: the peer");
    }
}
