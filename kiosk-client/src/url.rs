//! Server URL handling: users give the server's base URL (`http://host:port`, possibly behind a
//! reverse proxy under a path prefix), and the clients derive the WebSocket endpoint and the HTTP API
//! base from it.

use reqwest::Url;

use crate::ClientError;

/// The path of the WebSocket endpoint under the server's base URL.
pub(crate) const WS_PATH: &str = "/api/v1/ws";

fn parse(server: &str) -> Result<Url, ClientError> {
    let trimmed = server.trim();
    Url::parse(trimmed).map_err(|e| ClientError::InvalidUrl(format!("{trimmed:?}: {e}")))
}

/// The path prefix of a base URL, without a trailing slash and without the WebSocket endpoint.
fn base_path(url: &Url) -> String {
    let path = url.path().trim_end_matches('/');
    path.strip_suffix(WS_PATH).unwrap_or(path).to_owned()
}

/// The WebSocket endpoint for a server URL.
///
/// `http://h:p[/prefix]` becomes `ws://h:p[/prefix]/api/v1/ws` and `https://` becomes `wss://`. A
/// `ws://` or `wss://` URL is taken as the endpoint itself when it already ends in `/api/v1/ws`, and
/// as a base otherwise. Query strings and fragments are dropped.
///
/// ```
/// assert_eq!(
///     kiosk_client::ws_url("https://sportello.example.it/").unwrap(),
///     "wss://sportello.example.it/api/v1/ws"
/// );
/// ```
pub fn ws_url(server: &str) -> Result<String, ClientError> {
    let mut url = parse(server)?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(ClientError::InvalidUrl(format!(
                "{server:?}: scheme {other:?} is not http, https, ws or wss"
            )))
        }
    };
    if url.host_str().is_none() {
        return Err(ClientError::InvalidUrl(format!("{server:?}: no host")));
    }
    url.set_scheme(scheme)
        .map_err(|()| ClientError::InvalidUrl(format!("{server:?}: cannot use {scheme}")))?;
    let path = format!("{}{WS_PATH}", base_path(&url));
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url.to_string())
}

/// The HTTP base URL for a server URL, without a trailing slash: the API lives under
/// `{base}/api/v1/…`.
///
/// `ws://` becomes `http://` and `wss://` becomes `https://`; a trailing `/api/v1/ws` is removed.
///
/// ```
/// assert_eq!(
///     kiosk_client::http_base_url("ws://127.0.0.1:8080/api/v1/ws").unwrap(),
///     "http://127.0.0.1:8080"
/// );
/// ```
pub fn http_base_url(server: &str) -> Result<String, ClientError> {
    let mut url = parse(server)?;
    let scheme = match url.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(ClientError::InvalidUrl(format!(
                "{server:?}: scheme {other:?} is not http, https, ws or wss"
            )))
        }
    };
    if url.host_str().is_none() {
        return Err(ClientError::InvalidUrl(format!("{server:?}: no host")));
    }
    url.set_scheme(scheme)
        .map_err(|()| ClientError::InvalidUrl(format!("{server:?}: cannot use {scheme}")))?;
    let path = base_path(&url);
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url.to_string().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_becomes_ws_with_the_endpoint_path() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/api/v1/ws"
        );
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/api/v1/ws"
        );
        assert_eq!(
            ws_url("https://sportello.comune.pr.it").unwrap(),
            "wss://sportello.comune.pr.it/api/v1/ws"
        );
        assert_eq!(
            ws_url("  https://example.org:8443/  ").unwrap(),
            "wss://example.org:8443/api/v1/ws"
        );
    }

    #[test]
    fn path_prefixes_are_kept_and_queries_dropped() {
        assert_eq!(
            ws_url("https://proxy.example.org/sportello/").unwrap(),
            "wss://proxy.example.org/sportello/api/v1/ws"
        );
        assert_eq!(
            ws_url("http://h:1/x?debug=1#frag").unwrap(),
            "ws://h:1/x/api/v1/ws"
        );
    }

    #[test]
    fn ws_urls_are_accepted_as_endpoint_or_base() {
        assert_eq!(ws_url("ws://h:1/api/v1/ws").unwrap(), "ws://h:1/api/v1/ws");
        assert_eq!(ws_url("wss://h/api/v1/ws/").unwrap(), "wss://h/api/v1/ws");
        assert_eq!(ws_url("wss://h").unwrap(), "wss://h/api/v1/ws");
    }

    #[test]
    fn http_base_is_derived_back() {
        assert_eq!(
            http_base_url("ws://127.0.0.1:8080/api/v1/ws").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            http_base_url("wss://h/prefix/api/v1/ws").unwrap(),
            "https://h/prefix"
        );
        assert_eq!(http_base_url("http://h:9/").unwrap(), "http://h:9");
        assert_eq!(http_base_url("https://h/p/").unwrap(), "https://h/p");
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        for bad in ["ftp://h", "h:8080", "", "not a url", "file:///tmp/x"] {
            assert!(
                matches!(ws_url(bad), Err(ClientError::InvalidUrl(_))),
                "{bad:?} accepted"
            );
            assert!(
                matches!(http_base_url(bad), Err(ClientError::InvalidUrl(_))),
                "{bad:?} accepted"
            );
        }
    }
}
