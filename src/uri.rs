//! URL handling shared by the audience check, the metadata document and discovery:
//! canonical comparison of resource URIs (R-AUD-2), well-known path insertion
//! (RFC 8414 §3, RFC 9728 §3), and the checks that refuse insecure URLs at build time.

use std::borrow::Cow;

use http::Uri;

use crate::error::ConfigError;

/// Whether two URLs have one origin (scheme, host and port, compared canonically):
/// where a client secret may go (R-GW-3).
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    canonical(split_origin(a).0) == canonical(split_origin(b).0)
}

/// The canonical form of an absolute `http(s)` URL, for comparison only: scheme and
/// host lower-cased, the default port dropped, a trailing `/` of the path dropped.
/// Query is kept (RFC 8707 allows one); a fragment makes the URL non-canonical.
/// Anything that is not an absolute `http(s)` URL (a client id, `api://…`, a GUID)
/// is returned unchanged and so compares exactly.
pub(crate) fn canonical(value: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = value.split_once("://") else {
        return Cow::Borrowed(value);
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else {
        return Cow::Borrowed(value);
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') {
        return Cow::Borrowed(value);
    }
    let host = authority.strip_suffix(default_port).unwrap_or(authority);
    let (path, query) = match tail.find('?') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    // Every trailing slash, so that normalising twice changes nothing.
    let path = path.trim_end_matches('/');

    let already = scheme.bytes().all(|b| !b.is_ascii_uppercase())
        && host.bytes().all(|b| !b.is_ascii_uppercase())
        && host.len() == authority.len()
        && path.len() + query.len() == tail.len();
    if already {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    out.push_str(&scheme.to_ascii_lowercase());
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    out.push_str(path);
    out.push_str(query);
    Cow::Owned(out)
}

/// Inserts `well_known` (e.g. `oauth-protected-resource`) between the origin and the
/// path of `url`, as RFC 8414 and RFC 9728 prescribe:
/// `https://h/mcp` → `https://h/.well-known/oauth-protected-resource/mcp`.
pub(crate) fn insert_well_known(url: &str, well_known: &str) -> String {
    let (origin, path) = split_origin(url);
    let path = path.trim_end_matches('/');
    format!("{origin}/.well-known/{well_known}{path}")
}

/// Splits `scheme://authority` from the rest (path, query).
pub(crate) fn split_origin(url: &str) -> (&str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    url.split_at(end)
}

/// The path part of an absolute URL (without query), `""` for none.
pub(crate) fn path_of(url: &str) -> &str {
    let (_, rest) = split_origin(url);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    rest[..end].trim_end_matches('/')
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Which schemes a configured or discovered URL may use: what [`check_url_with`]
/// lets pass besides `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `https`, or plain `http` to a loopback host only (for development). The
    /// default everywhere.
    HttpsOrLoopback,
    /// Plain `http` to any host as well, for an issuer whose network is trusted by
    /// other means (see `Issuer::allow_insecure_http`).
    AnyHttp,
}

/// Checks that `url` is an absolute `https` URL (or `http` to a loopback host, for
/// development), without a fragment. `what` names the setting in the error message.
pub(crate) fn check_url(url: &str, what: &str) -> Result<(), ConfigError> {
    check_url_with(url, what, Transport::HttpsOrLoopback)
}

/// [`check_url`], but plain `http` to any host passes with [`Transport::AnyHttp`]
/// (for an issuer whose network is trusted otherwise; see
/// `Issuer::allow_insecure_http`).
pub(crate) fn check_url_with(
    url: &str,
    what: &str,
    transport: Transport,
) -> Result<(), ConfigError> {
    let uri: Uri = url.parse().map_err(|_| {
        ConfigError::new(format!(
            "{what} {url:?} is not a valid absolute URL; write it as https://host/path"
        ))
    })?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(ConfigError::new(format!(
            "{what} {url:?} is not an absolute URL; write it as https://host/path"
        )));
    };
    if url.contains('#') {
        return Err(ConfigError::new(format!(
            "{what} {url:?} has a fragment; remove the part from '#' on"
        )));
    }
    match scheme {
        "https" => Ok(()),
        "http" if transport == Transport::AnyHttp || is_loopback_host(host) => Ok(()),
        "http" => Err(ConfigError::new(format!(
            "{what} {url:?} uses plain http to a non-loopback host, which lets anyone on the \
             path read or forge it; use https (plain http is allowed only for localhost)"
        ))),
        _ => Err(ConfigError::new(format!(
            "{what} {url:?} must use https (or http for localhost)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// R-AUD-2: normalising is idempotent, never panics, and makes equal what
        /// differs only in scheme and host case, a default port, or a trailing slash.
        #[test]
        fn normalising_is_idempotent_and_ignores_case_ports_and_slashes(
            secure in proptest::bool::ANY,
            host in "[a-zA-Z0-9.-]{1,20}",
            path in "(/[a-zA-Z0-9._~%-]{0,8}){0,3}",
            upper in proptest::bool::ANY,
            port in proptest::bool::ANY,
            slash in proptest::bool::ANY,
            junk in ".{0,40}",
        ) {
            let scheme = if secure { "https" } else { "http" };
            let plain = format!("{scheme}://{host}{path}");
            let mut variant = format!(
                "{}://{}{}{path}",
                if upper { scheme.to_ascii_uppercase() } else { scheme.to_owned() },
                if upper { host.to_ascii_uppercase() } else { host.to_ascii_lowercase() },
                if port { if secure { ":443" } else { ":80" } } else { "" },
            );
            if slash && !variant.ends_with('/') {
                variant.push('/');
            }
            let once = canonical(&plain).into_owned();
            proptest::prop_assert_eq!(canonical(&once).into_owned(), once.clone());
            proptest::prop_assert_eq!(canonical(&variant).into_owned(), once);
            let junk_once = canonical(&junk).into_owned();
            proptest::prop_assert_eq!(canonical(&junk_once).into_owned(), junk_once);
        }

        /// A different port or path is never made equal to the resource.
        #[test]
        fn other_ports_and_paths_stay_different(
            host in "[a-z0-9]{1,12}",
            port in 1u16..,
            path in "/[a-z]{1,8}",
        ) {
            let resource = format!("https://{host}/mcp");
            proptest::prop_assume!(port != 443 && path != "/mcp");
            let with_port = format!("https://{host}:{port}/mcp");
            let elsewhere = format!("https://{host}{path}");
            proptest::prop_assert_ne!(canonical(&with_port), canonical(&resource));
            proptest::prop_assert_ne!(canonical(&elsewhere), canonical(&resource));
        }
    }

    #[test]
    fn canonical_normalises_case_default_port_and_trailing_slash() {
        // R-AUD-2
        assert_eq!(
            canonical("HTTPS://MCP.Example.com:443/mcp/"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(canonical("http://h:80/"), "http://h");
        assert_eq!(canonical("https://h:8443/mcp"), "https://h:8443/mcp");
        assert_eq!(
            canonical("https://h/MCP"),
            "https://h/MCP",
            "path stays case-sensitive"
        );
        assert_eq!(canonical("https://h/a?x=1"), "https://h/a?x=1");
        assert!(matches!(canonical("https://h/mcp"), Cow::Borrowed(_)));
    }

    #[test]
    fn canonical_leaves_non_urls_alone() {
        assert_eq!(canonical("my-client-ID"), "my-client-ID");
        assert_eq!(canonical("api://AbC"), "api://AbC");
        assert_eq!(
            canonical("6f1c2b9e-0000-4000-8000-000000000000"),
            "6f1c2b9e-0000-4000-8000-000000000000"
        );
    }

    #[test]
    fn well_known_is_inserted_before_the_path() {
        // R-PRM-1, R-KEY-2
        assert_eq!(
            insert_well_known("https://h/mcp", "oauth-protected-resource"),
            "https://h/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            insert_well_known("https://h", "oauth-authorization-server"),
            "https://h/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            insert_well_known("https://h/realms/a/", "oauth-authorization-server"),
            "https://h/.well-known/oauth-authorization-server/realms/a"
        );
        assert_eq!(path_of("https://h:1/a/b?q"), "/a/b");
        assert_eq!(path_of("https://h"), "");
    }

    #[test]
    fn insecure_urls_are_refused_with_a_fix() {
        // R-OPS-2
        assert!(check_url("https://idp.example.com", "issuer").is_ok());
        assert!(check_url("http://127.0.0.1:8080", "issuer").is_ok());
        assert!(check_url("http://localhost:8080", "issuer").is_ok());
        let err = check_url("http://idp.example.com", "issuer").unwrap_err();
        assert!(err.message().contains("use https"), "{err}");
        assert!(check_url("idp.example.com", "issuer").is_err());
        assert!(check_url("https://h/#x", "issuer").is_err());
    }
}
