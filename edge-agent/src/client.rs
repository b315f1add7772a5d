//! Who a request comes from: the client's IP address, taken from the connection, or,
//! for a connection from a trusted reverse proxy, from `X-Forwarded-For`. A header is
//! never believed from anyone else: any client can write one.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "not an IP address or network (a.b.c.d/n, x::/n)".to_owned())?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("the prefix length must be 0 to {bits}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), 32, self.prefix)
                    == masked(u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-bit address.
fn masked(addr: u128, bits: u8, prefix: u8) -> u128 {
    match bits - prefix {
        0 => addr,
        shift if shift >= 128 => 0,
        shift => addr >> shift,
    }
}

/// The client a request is counted against: `None` on the Unix socket (local clients,
/// the web server next to the agent). IPv6 clients are counted by their /64 network,
/// since one host commonly holds a whole /64 and could rotate through it.
pub fn client_of(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = |ip: IpAddr| proxies.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if trusted(peer) {
        // Right to left: each trusted hop names the one before it; the first hop that
        // is not a trusted proxy is the client. An unreadable entry ends the walk at
        // the last hop known for sure.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| {
                let text = value.to_str().unwrap_or("");
                text.rsplit(',').map(str::trim).collect::<Vec<_>>()
            })
            .map(|hop| hop.parse::<IpAddr>().map(|ip| ip.to_canonical()));
        for hop in hops {
            match hop {
                Ok(ip) => {
                    client = ip;
                    if !trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    Some(match client {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect(text)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect(text)
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        // An IPv4 client seen through a dual-stack socket.
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!net("10.0.0.0/8").contains(ip("fd00::1")));
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "shop",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().expect("header"));
        }
        headers
    }

    #[test]
    fn the_forwarded_client_counts_only_behind_a_trusted_proxy() {
        let proxies = [net("10.0.0.0/8")];
        let headers = forwarded(&["198.51.100.1, 203.0.113.5, 10.0.0.3"]);
        // Not from a proxy: the header is the client's own claim, ignored.
        assert_eq!(
            client_of(Some(ip("192.0.2.1")), &headers, &proxies),
            Some(ip("192.0.2.1"))
        );
        // From a proxy: the last hop that is not a proxy, never the spoofable first one.
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &headers, &proxies),
            Some(ip("203.0.113.5"))
        );
        // Several header lines are one list.
        let split = forwarded(&["198.51.100.1", "203.0.113.5"]);
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &split, &proxies),
            Some(ip("203.0.113.5"))
        );
        // Garbage ends the walk at the last known hop.
        let garbage = forwarded(&["203.0.113.5, junk, 10.0.0.9"]);
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &garbage, &proxies),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(
            client_of(Some(ip("10.0.0.2")), &HeaderMap::new(), &proxies),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(client_of(None, &headers, &proxies), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        assert_eq!(
            client_of(Some(ip("2001:db8:1:2:aaaa::1")), &HeaderMap::new(), &[]),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            client_of(Some(ip("::ffff:192.0.2.1")), &HeaderMap::new(), &[]),
            Some(ip("192.0.2.1"))
        );
    }
}
