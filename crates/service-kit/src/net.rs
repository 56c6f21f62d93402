//! Trusted networks: the client addresses allowed to send a password before
//! TLS (like Dovecot's `login_trusted_networks`). Default: loopback only.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedNetworks(Vec<IpNet>);

impl Default for TrustedNetworks {
    fn default() -> Self {
        Self::loopback()
    }
}

impl TrustedNetworks {
    pub fn loopback() -> Self {
        Self(vec![
            "127.0.0.0/8".parse().expect("valid literal"),
            "::1/128".parse().expect("valid literal"),
        ])
    }

    /// No network is trusted: passwords only over TLS.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("not a network or address: {s:?}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_default() {
        let t = TrustedNetworks::default();
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!t.contains("10.0.0.1".parse().unwrap()));
        assert!(!TrustedNetworks::none().contains("127.0.0.1".parse().unwrap()));
        let t = TrustedNetworks::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("192.0.2.7".parse().unwrap()));
        assert!(TrustedNetworks::parse(&["nope".into()]).is_err());
    }
}
