//! Where notifications may go. At registration: `https://` anywhere, or
//! `http://` to loopback only (development). At send time, every address the
//! host resolves to is checked, and link-local and cloud metadata addresses
//! are never contacted ([`FilteringResolver`] for names, [`check_literal`]
//! for IP literals, which no resolver sees).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Checks a URL given to `webhook set`; the error is one line for people.
pub fn validate_endpoint_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("--url {raw:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("--url must not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("--url must not have a #fragment".into());
    }
    let host = url
        .host()
        .ok_or_else(|| format!("--url {raw:?} has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(format!(
                "--url must use https:// (http:// only to loopback: 127.0.0.0/8, ::1, localhost); got {url}"
            ));
        }
        other => return Err(format!("--url must use https://, not {other}://")),
    }
    if let Some(Err(e)) = literal_ip(&host).map(check_ip) {
        return Err(format!("--url {e}"));
    }
    Ok(url)
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn literal_ip(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Domain(_) => None,
        Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
    }
}

/// Cloud metadata services outside link-local: Alibaba, Azure wire server.
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's IPv6 metadata endpoint.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Refuses link-local (169.254.0.0/16, fe80::/10), metadata and unspecified
/// addresses (IPv4-mapped IPv6 is checked as IPv4).
pub fn check_ip(ip: IpAddr) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let bad = match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || METADATA_V4.contains(&v4),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified() || v6 == METADATA_V6
        }
    };
    if bad {
        Err(format!(
            "{ip} is a link-local or metadata address; never contacted"
        ))
    } else {
        Ok(())
    }
}

/// Refuses a URL whose host is a forbidden IP literal (resolvers never see
/// literals).
pub fn check_literal(url: &Url) -> Result<(), String> {
    match url.host().as_ref().and_then(literal_ip) {
        Some(ip) => check_ip(ip),
        None => Ok(()),
    }
}

/// The system resolver, with forbidden addresses removed; a name that
/// resolves only to forbidden addresses fails to resolve.
#[derive(Debug, Default, Clone)]
pub struct FilteringResolver;

impl FilteringResolver {
    /// Shared, as reqwest wants it.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self)
    }
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| check_ip(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                let why = found
                    .first()
                    .map_or_else(|| "no address".to_owned(), |a| a.ip().to_string());
                return Err(format!("{host} resolves to a refused address ({why})").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://hooks.example.com/x",
            "http://127.0.0.1:9000/hook",
            "http://127.3.4.5/",
            "http://[::1]:8080/",
            "http://localhost:1234/a?b=c",
        ] {
            assert!(validate_endpoint_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "http://10.0.0.1/",
            "ftp://example.com/",
            "not a url",
            "https://169.254.169.254/latest",
            "https://[fe80::1]/",
            "https://100.100.100.200/",
            "https://[fd00:ec2::254]/",
            "https://user:pw@example.com/",
        ] {
            let e = validate_endpoint_url(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn link_local_and_metadata_are_refused_in_every_spelling() {
        for bad in [
            "169.254.1.1",
            "fe80::1",
            "febf::1",
            "::ffff:169.254.169.254",
            "0.0.0.0",
        ] {
            assert!(check_ip(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "93.184.216.34",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(check_ip(ok.parse().unwrap()).is_ok(), "{ok}");
        }
    }
}
