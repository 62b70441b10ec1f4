//! Sender-constrained access tokens: tokens bound to a key the client holds, DPoP
//! (RFC 9449, `cnf.jkt`) and mutual-TLS certificates (RFC 8705, `cnf["x5t#S256"]`).
//!
//! A bound token is accepted only from the issuers that say so ([`Issuer::dpop`],
//! [`Issuer::certificate_bound_tokens`]); by default every bound token is refused
//! (R-JWT-5), because a server that cannot check the binding must not take it for a
//! bearer token. The verifier lets the token's `cnf` through for such an issuer, and
//! the verify layer then checks, on every request, what the binding asks for: a DPoP
//! proof for this request, signed by the bound key (R-DPOP-1), or the client
//! certificate of the connection (R-MTLS-1). The verified-token cache keeps serving
//! the token; only the proof is new each time.
//!
//! [`Issuer::dpop`]: crate::Issuer::dpop
//! [`Issuer::certificate_bound_tokens`]: crate::Issuer::certificate_bound_tokens

mod certificate;
mod nonce;
#[cfg(feature = "redis")]
mod redis;
mod replay;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::HeaderValue;
use http::request::Parts;
use serde_json::{Map, Value};

pub use certificate::{CertificateHeader, ClientCertificate, ClientCertificates};
pub use nonce::{DEFAULT_NONCE_ROTATION, DpopNonces};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_REDIS_TIMEOUT, RedisReplayStore};
pub use replay::InMemoryReplayStore;

use crate::bearer::BearerToken;
use crate::dpop::{DpopError, DpopVerifier, ProofRequest};
use crate::error::AuthError;
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;

/// Whether an issuer's tokens may, or must, be DPoP-bound ([`Issuer::dpop`]).
///
/// [`Issuer::dpop`]: crate::Issuer::dpop
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpop {
    required: bool,
}

impl Dpop {
    /// DPoP-bound tokens are accepted (with the `DPoP` scheme and a proof), and so
    /// are the issuer's unbound tokens as `Bearer`. A DPoP-bound token sent as
    /// `Bearer` is refused (RFC 9449 §7.2).
    pub fn allowed() -> Self {
        Self { required: false }
    }

    /// Only DPoP-bound tokens with a proof are accepted; a token sent as `Bearer` is
    /// refused.
    pub fn required() -> Self {
        Self { required: true }
    }

    /// Whether every token of the issuer must be DPoP-bound.
    pub fn is_required(self) -> bool {
        self.required
    }
}

/// The key bindings an issuer's tokens may carry, as the verifiers carry them into
/// the [`Principal`]s they make. The default allows none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) dpop: Option<Dpop>,
    pub(crate) mtls: bool,
}

/// What a token's `cnf` claim binds it to.
struct Confirmation<'a> {
    jkt: Option<&'a str>,
    x5t: Option<&'a str>,
}

/// The token's `cnf` (RFC 7800), if it has one: `jkt` (RFC 9449) and/or
/// `x5t#S256` (RFC 8705), strings. Any other member, or another shape, is a binding
/// this server cannot check: refused.
fn confirmation(claims: &Map<String, Value>) -> Result<Option<Confirmation<'_>>, AuthError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let unreadable = || {
        AuthError::invalid_token(
            Rule::Jwt5,
            "the token's cnf claim binds it to something this server cannot check; \
             only cnf.jkt (DPoP) and cnf[\"x5t#S256\"] (mTLS) are understood",
        )
    };
    let Value::Object(members) = cnf else {
        return Err(unreadable());
    };
    let mut found = Confirmation {
        jkt: None,
        x5t: None,
    };
    for (name, value) in members {
        let value = value.as_str().filter(|v| !v.is_empty());
        match (name.as_str(), value) {
            ("jkt", Some(jkt)) => found.jkt = Some(jkt),
            ("x5t#S256", Some(x5t)) => found.x5t = Some(x5t),
            _ => return Err(unreadable()),
        }
    }
    match (found.jkt, found.x5t) {
        (None, None) => Err(unreadable()),
        _ => Ok(Some(found)),
    }
}

/// Refuses a token whose `cnf` its issuer's `binding` does not allow (R-JWT-5): what
/// the verifiers call, so that a bound token never becomes a principal unless its
/// binding is going to be checked.
pub(crate) fn refuse_unbindable(
    claims: &Map<String, Value>,
    binding: Binding,
) -> Result<(), AuthError> {
    let Some(cnf) = confirmation(claims)? else {
        return Ok(());
    };
    if cnf.jkt.is_some() && binding.dpop.is_none() {
        return Err(AuthError::invalid_token(
            Rule::Jwt5,
            "the token is bound to a DPoP key (cnf.jkt), and this server does not \
             accept DPoP-bound tokens from its issuer",
        ));
    }
    if cnf.x5t.is_some() && !binding.mtls {
        return Err(AuthError::invalid_token(
            Rule::Jwt5,
            "the token is bound to a client certificate (cnf x5t#S256), and this server \
             does not accept certificate-bound tokens from its issuer",
        ));
    }
    Ok(())
}

/// `resource` with what the issuers' key bindings make of the metadata document and
/// the challenges: the DPoP proof algorithms when an issuer accepts DPoP, DPoP
/// required when every issuer requires it, certificate-bound tokens when an issuer
/// accepts them. `others`: some tokens go to verifiers that are not issuers'.
pub(crate) fn describe(
    mut resource: ProtectedResource,
    issuers: &[crate::Issuer],
    others: bool,
    sender: &SenderChecks,
) -> ProtectedResource {
    if issuers.iter().any(|i| i.dpop_policy().is_some()) {
        let algorithms = sender.proof_verifier().allowed_algorithms().to_vec();
        let required = !others
            && issuers
                .iter()
                .all(|i| i.dpop_policy().is_some_and(Dpop::is_required));
        resource = resource
            .dpop_signing_algs(algorithms)
            .dpop_bound_access_tokens_required(required);
    }
    if issuers
        .iter()
        .any(crate::Issuer::accepts_certificate_bound_tokens)
    {
        resource = resource.tls_client_certificate_bound_access_tokens(true);
    }
    resource
}

/// How the verify layer checks the bindings of sender-constrained tokens: the DPoP
/// proof verifier (algorithms, time window, replay store), the server's DPoP nonces
/// if any, and where client certificates come from. Cheap to clone.
///
/// ```
/// use mcp_gatekeeper::{ClientCertificates, DpopNonces, DpopVerifier, SenderChecks};
///
/// // In production: 32 or more random bytes from a secret store, the same on every
/// // replica.
/// let secret = [7u8; 32];
/// let checks = SenderChecks::new()
///     .proofs(DpopVerifier::new())
///     .nonces(DpopNonces::new(secret).expect("a 32-byte secret"))
///     .client_certificates(ClientCertificates::from_connection());
/// ```
#[derive(Clone, Debug, Default)]
pub struct SenderChecks(Arc<Checks>);

#[derive(Debug, Default)]
struct Checks {
    proofs: DpopVerifier,
    nonces: Option<DpopNonces>,
    certificates: ClientCertificates,
}

impl SenderChecks {
    /// A [`DpopVerifier::new`], no nonces, and client certificates from the
    /// connection ([`ClientCertificates::from_connection`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn edit(mut self, f: impl FnOnce(&mut Checks)) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(checks) => f(checks),
            None => {
                let mut checks = Checks {
                    proofs: self.0.proofs.clone(),
                    nonces: self.0.nonces.clone(),
                    certificates: self.0.certificates.clone(),
                };
                f(&mut checks);
                self = Self(Arc::new(checks));
            }
        }
        self
    }

    /// How DPoP proofs are checked.
    pub fn proofs(self, proofs: DpopVerifier) -> Self {
        self.edit(|c| c.proofs = proofs)
    }

    /// Server nonces (RFC 9449 §9): every proof must carry a current one.
    pub fn nonces(self, nonces: DpopNonces) -> Self {
        self.edit(|c| c.nonces = Some(nonces))
    }

    /// Where the client certificate of a request comes from.
    pub fn client_certificates(self, certificates: ClientCertificates) -> Self {
        self.edit(|c| c.certificates = certificates)
    }

    /// The DPoP proof verifier.
    pub fn proof_verifier(&self) -> &DpopVerifier {
        &self.0.proofs
    }

    /// Whether a request of `principal`, whose token came as `token`, has no binding
    /// to check: the hot path of every unbound bearer token.
    pub(crate) fn nothing_to_check(principal: &Principal, token: &BearerToken) -> bool {
        principal.is_anonymous()
            || (!token.is_dpop()
                && !principal.claims().contains_key("cnf")
                && !principal.binding().dpop.is_some_and(Dpop::is_required))
    }

    /// What of `parts` the checks need, taken out so they can run after the request
    /// has gone on waiting for its verification.
    pub(crate) fn request(
        &self,
        parts: &Parts,
        token: &BearerToken,
        resource: &ProtectedResource,
    ) -> SenderRequest {
        let (uri, other_uri) = proof_uris(parts, resource).unwrap_or_default();
        SenderRequest {
            method: parts.method.clone(),
            uri,
            other_uri,
            token: token.clone(),
            certificate: self.0.certificates.thumbprint(parts),
        }
    }

    /// Checks the bindings of `principal`'s token for `request`.
    pub(crate) fn check(&self, principal: &Principal, request: &SenderRequest) -> Outcome {
        match self.check_now(principal, request) {
            Ok(Step::Done(renewal)) => Outcome::Pass(renewal),
            Ok(Step::Replay(first_use, renewal)) => replay(first_use, renewal),
            Err(error) => Outcome::Refuse(error),
        }
    }

    /// Every check that needs no waiting.
    fn check_now(&self, principal: &Principal, request: &SenderRequest) -> Result<Step, AuthError> {
        let binding = principal.binding();
        let cnf = confirmation(principal.claims())?;
        let (jkt, x5t) = cnf.map_or((None, None), |c| (c.jkt, c.x5t));
        // A verifier of this crate's users makes principals whose binding is not known.
        refuse_unbindable(principal.claims(), binding)?;
        if let Some(bound) = x5t {
            check_certificate(bound, &request.certificate)?;
        }
        if !request.token.is_dpop() {
            return bearer_scheme(jkt, binding);
        }
        let Some(proof) = request.token.dpop_proof() else {
            return Err(AuthError::invalid_dpop_proof(
                "the DPoP header is not ASCII",
            ));
        };
        if request.uri.is_empty() {
            return Err(AuthError::invalid_dpop_proof(
                "the request is not for a protected resource URI, so no DPoP proof can name it",
            ));
        }
        let Some(jkt) = jkt.filter(|_| binding.dpop.is_some()) else {
            return Err(AuthError::invalid_token(
                Rule::Dpop1,
                match binding.dpop {
                    Some(_) => "the token came with the DPoP scheme but is not bound to a key (it has no cnf.jkt)",
                    None => "this server does not accept DPoP from the token's issuer; send the token as Bearer",
                },
            )
            .on_dpop_challenge());
        };
        let proof_request = ProofRequest {
            method: request.method.as_str(),
            uri: &request.uri,
            other_uri: request.other_uri.as_deref(),
            access_token: request.token.as_str(),
        };
        let checks = &self.0;
        let verified = checks
            .proofs
            .check(proof, proof_request, SystemTime::now())
            .map_err(proof_error)?;
        if verified.jkt != jkt {
            return Err(AuthError::invalid_token(
                Rule::Dpop1,
                "the DPoP proof is signed with another key than the one the token is bound to (cnf.jkt)",
            )
            .on_dpop_challenge());
        }
        let renewal = match &checks.nonces {
            Some(nonces) => nonces.check(verified.nonce.as_deref())?,
            None => None,
        };
        Ok(Step::Replay(
            Box::pin(checks.proofs.first_use(&verified)),
            renewal,
        ))
    }
}

/// The checks of a token that came with the `Bearer` scheme (RFC 9449 §7.2).
fn bearer_scheme(jkt: Option<&str>, binding: Binding) -> Result<Step, AuthError> {
    if jkt.is_some() {
        return Err(AuthError::invalid_token(
            Rule::Jwt5,
            "the token is DPoP-bound (cnf.jkt): send it as 'Authorization: DPoP <token>' \
             with a DPoP proof, not as a bearer token",
        )
        .on_dpop_challenge());
    }
    if binding.dpop.is_some_and(Dpop::is_required) {
        return Err(AuthError::invalid_token(
            Rule::Dpop1,
            "this server accepts only DPoP-bound tokens from the token's issuer: get a \
             DPoP-bound token and send it as 'Authorization: DPoP <token>' with a DPoP proof",
        )
        .on_dpop_challenge());
    }
    Ok(Step::Done(None))
}

/// `cnf["x5t#S256"]` against the request's client certificate (RFC 8705 §3).
fn check_certificate(
    bound: &str,
    presented: &Result<Option<String>, AuthError>,
) -> Result<(), AuthError> {
    match presented {
        Err(error) => Err(error.clone()),
        Ok(None) => Err(AuthError::invalid_token(
            Rule::Mtls1,
            "the token is bound to a client certificate (cnf x5t#S256) and the request \
             came without one",
        )),
        Ok(Some(thumbprint)) if thumbprint == bound => Ok(()),
        Ok(Some(_)) => Err(AuthError::invalid_token(
            Rule::Mtls1,
            "the request's client certificate is not the one the token is bound to \
             (cnf x5t#S256)",
        )),
    }
}

/// The refusal of a proof that failed a check.
fn proof_error(error: DpopError) -> AuthError {
    match error {
        DpopError::Invalid(why) => AuthError::invalid_dpop_proof(why),
        DpopError::Unavailable(why) => {
            tracing::warn!("DPoP replay store failed: {why}");
            AuthError::unavailable(
                std::time::Duration::from_secs(1),
                "the DPoP replay store cannot be reached",
            )
        }
    }
}

/// The URIs a proof's `htu` may name for a request, never from `Host`: the origin of
/// the request's resource URI with the path the request arrived at; and the resource
/// URI itself when its path ends with that path (the same path, or one a proxy or a
/// nested router took a prefix off). `None` when the request is not for a resource.
fn proof_uris(parts: &Parts, resource: &ProtectedResource) -> Option<(String, Option<String>)> {
    let uri = resource.resource_for(parts)?;
    let path = parts.uri.path();
    let origin_end = uri
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|host| uri[host..].find('/').map(|p| host + p))
        .unwrap_or(uri.len());
    let (origin, resource_path) = uri.split_at(origin_end);
    let at_path = format!("{origin}{path}");
    let whole = (resource_path != path && resource_path.ends_with(path)).then(|| uri.into_owned());
    Some((at_path, whole))
}

type FirstUse = Pin<Box<dyn Future<Output = Result<(), DpopError>> + Send>>;

/// What is left after the checks that need no waiting.
enum Step {
    /// Nothing: the token passes; maybe with a new nonce for the answer.
    Done(Option<HeaderValue>),
    /// The replay store's answer, then the same.
    Replay(FirstUse, Option<HeaderValue>),
}

/// The outcome of [`SenderChecks::check`].
pub(crate) enum Outcome {
    /// The binding holds; the answer carries the new nonce, if any.
    Pass(Option<HeaderValue>),
    /// Refused.
    Refuse(AuthError),
    /// The replay store is still to answer.
    Wait(Pin<Box<dyn Future<Output = Result<Option<HeaderValue>, AuthError>> + Send>>),
}

/// Asks the replay store; an in-process store answers at once, so the request is
/// decided without waiting (and without a task wake-up).
fn replay(mut first_use: FirstUse, renewal: Option<HeaderValue>) -> Outcome {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match first_use.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(())) => Outcome::Pass(renewal),
        Poll::Ready(Err(error)) => Outcome::Refuse(proof_error(error)),
        Poll::Pending => Outcome::Wait(Box::pin(async move {
            first_use.await.map_err(proof_error)?;
            Ok(renewal)
        })),
    }
}

/// What the checks need of a request: its method, the URIs its proof may name, the
/// token (with its scheme and proof) and the client certificate's thumbprint.
pub(crate) struct SenderRequest {
    method: http::Method,
    uri: String,
    other_uri: Option<String>,
    token: BearerToken,
    certificate: Result<Option<String>, AuthError>,
}
