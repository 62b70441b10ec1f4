//! [`ExchangeLayer`]: the upstream's token in place of the client's credentials on
//! a request going out of a gateway.

use std::sync::Arc;

use super::{ExchangeError, TokenExchange};

/// A layer for the client side of a gateway, inside the stack (after verification): it
/// replaces a request's credentials with an upstream token before the request is sent
/// on. A request whose token the stack verified (a [`BearerToken`](crate::BearerToken)
/// and the [`Principal`](crate::Principal) made of it in its extensions) gets
/// `Authorization: Bearer <the exchanged token>`; any other request is sent without
/// `Authorization` (and without a `DPoP` header): the client's own credentials never
/// reach the upstream. A failed exchange is answered here: `502` when the
/// authorization server refused the token, `503` when it could not be asked, each with
/// a JSON-RPC error body and the cause in the log.
#[derive(Clone, Debug)]
pub struct ExchangeLayer {
    exchanges: Exchanges,
}

/// The exchanges of a layer, in the order they were added.
#[derive(Clone, Debug)]
struct Exchanges(Arc<[TokenExchange]>);

impl Exchanges {
    /// The exchange for a token of `issuer`: the first one for this issuer, else the
    /// first one for any issuer.
    fn pick(&self, issuer: &str) -> Option<&TokenExchange> {
        self.0
            .iter()
            .find(|e| e.issuer() == Some(issuer))
            .or_else(|| self.0.iter().find(|e| e.issuer().is_none()))
    }
}

impl ExchangeLayer {
    /// Exchanges with `exchange` (only the tokens of its issuer, when it has one).
    pub fn new(exchange: TokenExchange) -> Self {
        Self {
            exchanges: Exchanges(Arc::from([exchange])),
        }
    }

    /// Also exchanges with `exchange`: the tokens of each issuer go to the exchange
    /// for that issuer ([`TokenExchange::discover`], [`TokenExchangeBuilder::issuer`](super::TokenExchangeBuilder::issuer)),
    /// else to the first exchange for any issuer. A verified token that no exchange
    /// takes is answered `502`, never passed on.
    pub fn also(self, exchange: TokenExchange) -> Self {
        let mut all = self.exchanges.0.to_vec();
        all.push(exchange);
        Self {
            exchanges: Exchanges(all.into()),
        }
    }
}

impl<S> tower::Layer<S> for ExchangeLayer {
    type Service = ExchangeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExchangeService {
            inner,
            exchanges: self.exchanges.clone(),
        }
    }
}

/// The service of an [`ExchangeLayer`].
#[derive(Clone, Debug)]
pub struct ExchangeService<S> {
    inner: S,
    exchanges: Exchanges,
}

/// The future of an [`ExchangeService`].
pub type ExchangeFuture<R, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ExchangeService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ExchangeFuture<Self::Response, S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service polled ready goes into the future; a clone stays for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Only a token the stack verified: a BearerToken beside the Principal the verify
        // layer made of it (a layer placed before verification exchanges nothing).
        let issuer = request
            .extensions()
            .get::<crate::Principal>()
            .filter(|principal| !principal.is_anonymous())
            .map(|principal| principal.issuer().to_owned());
        let subject = request
            .extensions()
            .get::<crate::BearerToken>()
            .zip(issuer)
            .map(|(token, issuer)| {
                let exchange = self.exchanges.pick(&issuer).cloned().ok_or_else(|| {
                    ExchangeError::Refused(format!("no token exchange for issuer {issuer}"))
                });
                (token.as_str().to_owned(), exchange)
            });
        let headers = request.headers_mut();
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("dpop");
        Box::pin(async move {
            if let Some((subject, exchange)) = subject {
                let exchanged = match exchange {
                    Ok(exchange) => exchange.exchange(&subject).await,
                    Err(error) => Err(error),
                };
                match exchanged {
                    Ok(token) => match http::HeaderValue::from_str(&format!("Bearer {token}")) {
                        Ok(mut value) => {
                            value.set_sensitive(true);
                            request
                                .headers_mut()
                                .insert(http::header::AUTHORIZATION, value);
                        }
                        Err(_) => {
                            let error = ExchangeError::Refused(
                                "the exchanged token cannot be sent in a header".into(),
                            );
                            return Ok(refusal(&error));
                        }
                    },
                    Err(error) => return Ok(refusal(&error)),
                }
            }
            let response = inner.call(request).await?;
            Ok(response.map(crate::body::ResponseBody::inner))
        })
    }
}

/// The answer to a request whose token could not be exchanged.
fn refusal<B>(error: &ExchangeError) -> http::Response<crate::body::ResponseBody<B>> {
    tracing::warn!("the upstream token could not be had: {error}");
    let (status, message) = match error {
        ExchangeError::Refused(_) => (
            http::StatusCode::BAD_GATEWAY,
            "the gateway could not get a token for the upstream server for this request",
        ),
        ExchangeError::Unavailable(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "the gateway cannot reach the authorization server to get a token for the upstream server",
        ),
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": message},
    });
    let mut response = http::Response::new(crate::body::ResponseBody::full(bytes::Bytes::from(
        body.to_string(),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
