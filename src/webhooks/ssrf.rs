//! Which addresses a webhook may reach. A URL is checked when it is registered and
//! every connection is checked again after DNS, by the delivery client's resolver,
//! so a name that later resolves to an internal address cannot be reached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderValue;
use reqwest::redirect::Policy;

/// Whether `ip` is loopback, private, link-local (cloud metadata lives at
/// 169.254.169.254), unspecified, multicast, broadcast or reserved, carrier-grade
/// NAT, or an IPv4-mapped form of one of those.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0 // "this network"
        || a >= 240 // reserved
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        // IPv4-compatible (deprecated) and NAT64 forms embed an IPv4 address.
        || ip.to_ipv4().is_some_and(|v4| !ip.is_loopback() && forbidden_v4(v4))
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            && forbidden_v4(Ipv4Addr::from_bits(ip.to_bits() as u32)))
}

/// Parses and checks a webhook URL: absolute, http or https, with a host that is
/// not (and does not resolve to) a forbidden address unless `allow_private`.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|_| "url must be an absolute http or https URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must use http or https".into());
    }
    let Some(host) = url.host() else {
        return Err("url must name a host".into());
    };
    if allow_private {
        return Ok(url);
    }
    let refused = || {
        "url must not point at a loopback, private, link-local or otherwise internal address"
            .to_string()
    };
    match host {
        url::Host::Ipv4(ip) if is_forbidden(IpAddr::V4(ip)) => Err(refused()),
        url::Host::Ipv6(ip) if is_forbidden(IpAddr::V6(ip)) => Err(refused()),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => Ok(url),
        url::Host::Domain(name) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| format!("url host {name:?} cannot be resolved"))?
                .collect();
            if addrs.is_empty() || addrs.iter().any(|a| is_forbidden(a.ip())) {
                Err(refused())
            } else {
                Ok(url)
            }
        }
    }
}

/// Refuses a URL whose host is a forbidden IP literal: reqwest does not consult the
/// resolver for those.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if !allow_private && is_forbidden(ip) {
        return Err(format!("address {ip} is not allowed"));
    }
    Ok(())
}

/// A resolver that drops forbidden addresses from every answer.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let allowed: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_forbidden(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no address webhooks may reach").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The delivery client: `timeout` per request, no redirects, no proxies from the
/// environment, and (unless `allow_private`) the guarded resolver.
pub fn client(timeout: std::time::Duration, allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(Policy::none())
        .no_proxy()
        .user_agent(HeaderValue::from_static(concat!(
            "autoscaler-webhooks/",
            env!("CARGO_PKG_VERSION")
        )))
        .pool_max_idle_per_host(64);
    if !allow_private {
        builder = builder.dns_resolver(std::sync::Arc::new(GuardedResolver));
    }
    builder.build().expect("the webhook HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_internal_address_class_is_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                is_forbidden(ip.parse().unwrap()),
                "{ip} should be forbidden"
            );
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[tokio::test]
    async fn urls_must_be_http_and_external() {
        assert!(check_url("ftp://example.com/", false).await.is_err());
        assert!(check_url("not a url", false).await.is_err());
        assert!(check_url("http://127.0.0.1:8080/", false).await.is_err());
        assert!(check_url("http://[::1]/", false).await.is_err());
        assert!(check_url("http://localhost/", false).await.is_err());
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        assert!(check_url("http://127.0.0.1:8080/", true).await.is_ok());
    }
}
