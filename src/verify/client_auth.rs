//! [`ClientAuth`]: how this server authenticates as an OAuth client, to the
//! introspection endpoint (RFC 7662) and the token endpoint (RFC 8693 exchange).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// How this server authenticates as an OAuth client: to the introspection endpoint,
/// and to the token endpoint for token exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl ClientAuth {
    /// Authenticates `client_id` with `client_secret` on a token or introspection
    /// request: the `Authorization` value (Basic), or the credentials added to `form`
    /// (Post).
    pub(crate) fn authenticate(
        self,
        form: &mut form_urlencoded::Serializer<'_, String>,
        client_id: &str,
        client_secret: &str,
    ) -> Option<String> {
        match self {
            Self::ClientSecretBasic => {
                let encode =
                    |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", encode(client_id), encode(client_secret));
                Some(format!("Basic {}", STANDARD.encode(pair)))
            }
            Self::ClientSecretPost => {
                form.append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret);
                None
            }
        }
    }
}
