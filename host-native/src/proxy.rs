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

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
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

/// The longest PROXY protocol v1 line, `\r\n` included.
const V1_MAX: usize = 107;
/// The PROXY protocol v2 signature.
const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// Reads a PROXY protocol header (v1 text or v2 binary) from the start of a
/// connection from a trusted proxy and returns the client's address it
/// names (None for a `LOCAL` / `UNKNOWN` header: the proxy's own
/// connection). Reads exactly the header, nothing of what follows.
pub async fn read_proxy_header<R>(io: &mut R) -> Result<Option<std::net::SocketAddr>, String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 12];
    io.read_exact(&mut first[..5]).await.map_err(|e| e.to_string())?;
    if &first[..5] == b"PROXY" {
        let mut line = first[..5].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err("PROXY v1 line too long".into());
            }
            line.push(io.read_u8().await.map_err(|e| e.to_string())?);
        }
        return parse_v1(&line[..line.len() - 2]);
    }
    io.read_exact(&mut first[5..]).await.map_err(|e| e.to_string())?;
    if first != V2_SIGNATURE {
        return Err("no PROXY protocol header from a proxy that must send one".into());
    }
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    if head[0] >> 4 != 2 {
        return Err(format!("PROXY protocol version {} is not 2", head[0] >> 4));
    }
    let command = head[0] & 0x0F;
    if command == 0 {
        return Ok(None); // LOCAL: the proxy's own health check
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match head[1] >> 4 {
        1 if body.len() >= 12 => {
            let ip = std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Ok(Some(std::net::SocketAddr::new(ip.into(), port(&body[8..10]))))
        }
        2 if body.len() >= 36 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&body[..16]);
            Ok(Some(std::net::SocketAddr::new(std::net::Ipv6Addr::from(b).into(), port(&body[32..34]))))
        }
        _ => Ok(None),
    }
}

fn parse_v1(line: &[u8]) -> Result<Option<std::net::SocketAddr>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "PROXY v1 line is not text".to_owned())?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| format!("PROXY v1: bad source address `{src}`"))?;
            let port: u16 = sport.parse().map_err(|_| format!("PROXY v1: bad source port `{sport}`"))?;
            Ok(Some(std::net::SocketAddr::new(ip, port)))
        }
        _ => Err(format!("PROXY v1: cannot read `{text}`")),
    }
}

#[cfg(test)]
mod proxy_protocol_tests {
    use super::*;

    #[tokio::test]
    async fn both_versions_name_the_client_and_nothing_more_is_read() {
        let mut v1: &[u8] = b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 443\r\nGET / HTTP/1.1\r\n";
        let got = read_proxy_header(&mut v1).await.expect("v1");
        assert_eq!(got, Some("198.51.100.7:5555".parse().expect("addr")));
        assert!(v1.starts_with(b"GET /"), "the request is left to read");
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB]);
        v2.extend_from_slice(b"GET");
        let mut r: &[u8] = &v2;
        assert_eq!(read_proxy_header(&mut r).await.expect("v2"), Some("203.0.113.9:8080".parse().expect("addr")));
        assert_eq!(r, b"GET");
        let mut unknown: &[u8] = b"PROXY UNKNOWN\r\n";
        assert_eq!(read_proxy_header(&mut unknown).await.expect("unknown"), None);
        let mut plain: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(read_proxy_header(&mut plain).await.is_err(), "a proxy that must send a header and did not");
        let mut long: &[u8] = &[b'P', b'R', b'O', b'X', b'Y', b' ', b'x'].repeat(40);
        assert!(read_proxy_header(&mut long).await.is_err());
    }
}
