//! The claim checks of a JWT whose signature verified: exact `iss`, `exp` required
//! and not past, `nbf` and `iat` not in the future, all three within the issuer's
//! leeway and each a NumericDate between 1970 and 9999 (R-JWT-2); `aud` a string or
//! an array of strings (R-AUD-2); no ID, refresh or key-bound token (R-JWT-4,
//! R-JWT-5); and strict RFC 9068 when the issuer asks for it (R-JWT-4).

use serde_json::{Map, Value};

use super::jose::JoseHeader;
use super::jwt::IssuerRuntime;
use crate::error::AuthError;
use crate::rule::Rule;

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Later ones are not dates a
/// token is given but numbers meant to overflow someone's arithmetic.
const LAST_DATE: f64 = 253_402_300_799.0;

/// A NumericDate claim (RFC 7519 §2: seconds since 1970, possibly with a fraction),
/// when present. `Err` when it is there but not a number, or before 1970, or after
/// the year 9999.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|t| (0.0..=LAST_DATE).contains(t))
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

/// When a date claim refuses the token, beyond the leeway either way.
enum RefusedWhen {
    /// Once the date has passed (`exp`).
    Passed,
    /// While the date is in the future (`nbf`, `iat`).
    InFuture,
}

/// One date claim: its name, when it refuses the token, and the refusals it gives
/// (R-JWT-2).
struct DateClaim {
    name: &'static str,
    refused_when: RefusedWhen,
    /// The refusal when it is present but not a NumericDate.
    not_a_date: &'static str,
    /// The refusal when its time has come ([`DateClaim::refused_when`]).
    refusal: &'static str,
}

const EXP: DateClaim = DateClaim {
    name: "exp",
    refused_when: RefusedWhen::Passed,
    not_a_date: "the token's exp is not a date (a number of seconds from 1970 to 9999)",
    refusal: "the token has expired",
};

const NBF: DateClaim = DateClaim {
    name: "nbf",
    refused_when: RefusedWhen::InFuture,
    not_a_date: "the token's nbf is not a date (a number of seconds from 1970 to 9999)",
    refusal: "the token is not valid yet (nbf)",
};

const IAT: DateClaim = DateClaim {
    name: "iat",
    refused_when: RefusedWhen::InFuture,
    not_a_date: "the token's iat is not a date (a number of seconds from 1970 to 9999)",
    refusal: "the token was issued in the future (iat)",
};

/// Checks the date claim `claim` against `now` (seconds since 1970) give or take
/// `leeway` seconds: its value, or `None` when the token does not have it.
fn check_date(
    claims: &Map<String, Value>,
    claim: &DateClaim,
    now: f64,
    leeway: f64,
) -> Result<Option<f64>, AuthError> {
    let date = numeric_date(claims, claim.name)
        .map_err(|()| AuthError::invalid_token(Rule::Jwt2, claim.not_a_date))?;
    let refused = date.is_some_and(|date| match claim.refused_when {
        RefusedWhen::Passed => date < now - leeway,
        RefusedWhen::InFuture => date > now + leeway,
    });
    if refused {
        return Err(AuthError::invalid_token(Rule::Jwt2, claim.refusal));
    }
    Ok(date)
}

/// The claim checks (R-JWT-2, R-JWT-4, R-JWT-5) after the signature: exact `iss`,
/// `exp` required and not past, `nbf` and `iat` not in the future (all within the
/// issuer's leeway), the shape of `aud`, no ID, refresh or key-bound token, and
/// strict RFC 9068 when asked. `now` is the time in seconds since 1970. Returns
/// `exp` in whole seconds.
pub(super) fn check_claims(
    issuer: &IssuerRuntime,
    header: &JoseHeader,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<u64, AuthError> {
    // A single string, exactly the issuer.
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(AuthError::invalid_token(
            Rule::Jwt2,
            "the token's iss does not match its issuer exactly",
        ));
    }
    let now = now as f64;
    let leeway = issuer.leeway as f64;
    let exp = check_date(claims, &EXP, now, leeway)?.ok_or_else(|| {
        AuthError::invalid_token(
            Rule::Jwt2,
            "the token has no exp claim, or it is not a number",
        )
    })?;
    check_date(claims, &NBF, now, leeway)?;
    check_date(claims, &IAT, now, leeway)?;
    check_aud_shape(claims)?;
    super::refuse_non_bearer_access_tokens(claims, issuer.binding)?;
    if issuer.strict_rfc9068 {
        check_rfc9068(header, claims)?;
    }
    // Whole seconds, for the cache: an entry ends at or before exp. Saturating casts.
    Ok(exp.max(0.0) as u64)
}

/// `aud`, when present, is a string or an array of strings (R-AUD-2).
fn check_aud_shape(claims: &Map<String, Value>) -> Result<(), AuthError> {
    match claims.get("aud") {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(AuthError::invalid_token(
            Rule::Aud2,
            "the token's aud is neither a string nor an array of strings",
        )),
    }
}

/// Strict RFC 9068 (R-JWT-4): `typ` is `at+jwt`, and the claims it requires are
/// present (`iss` and `exp` are required anyway).
fn check_rfc9068(header: &JoseHeader, claims: &Map<String, Value>) -> Result<(), AuthError> {
    let typ_ok = header.typ.as_deref().is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(AuthError::invalid_token(
            Rule::Jwt4,
            "the token's typ is not at+jwt (RFC 9068)",
        ));
    }
    for claim in ["aud", "sub", "client_id", "iat", "jti"] {
        if !claims.contains_key(claim) {
            return Err(AuthError::invalid_token(
                Rule::Jwt4,
                format!("the token has no {claim} claim, which RFC 9068 requires"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;
    use crate::error::AuthErrorKind;
    use crate::keys::KeyChain;

    const ISSUER: &str = "https://idp.example.com";
    /// A fixed "now": 2023-11-14T22:13:20Z.
    const NOW: u64 = 1_700_000_000;
    const LEEWAY: u64 = 60;
    /// The `exp` of [`valid`] claims.
    const EXP_IN_AN_HOUR: u64 = NOW + 3600;

    fn issuer(strict_rfc9068: bool) -> IssuerRuntime {
        IssuerRuntime {
            issuer: ISSUER.to_owned(),
            label: ISSUER,
            keys: KeyChain::new(Vec::new()),
            hmac: None,
            algorithms: vec![Algorithm::RS256],
            leeway: LEEWAY,
            strict_rfc9068,
            binding: crate::sender::Binding::default(),
        }
    }

    fn header(typ: Option<&str>) -> JoseHeader {
        JoseHeader {
            alg: Algorithm::RS256,
            kid: None,
            typ: typ.map(str::to_owned),
            cty: None,
            crit: None,
            b64: None,
        }
    }

    /// Claims that pass: the issuer, and an `exp` an hour after [`NOW`].
    fn valid() -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".to_owned(), json!(ISSUER));
        claims.insert("exp".to_owned(), json!(EXP_IN_AN_HOUR));
        claims
    }

    /// [`valid`] claims with `name` set to `value`.
    fn with(name: &str, value: Value) -> Map<String, Value> {
        let mut claims = valid();
        claims.insert(name.to_owned(), value);
        claims
    }

    /// The claims checked at [`NOW`] for a non-strict issuer.
    fn check(claims: &Map<String, Value>) -> Result<u64, AuthError> {
        check_claims(&issuer(false), &header(None), claims, NOW)
    }

    /// The `exp` that checking `claims` gives; panics when they are refused.
    #[track_caller]
    fn passes(claims: &Map<String, Value>) -> u64 {
        match check(claims) {
            Ok(exp) => exp,
            Err(error) => panic!("refused: {}", error.description()),
        }
    }

    /// Asserts that `result` is an `invalid_token` refusal by `rule` saying `description`.
    #[track_caller]
    fn assert_refused<T: std::fmt::Debug>(
        result: Result<T, AuthError>,
        rule: Rule,
        description: &str,
    ) {
        let error = result.expect_err("should be refused");
        assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
        assert_eq!(error.rule(), rule);
        assert_eq!(error.description(), description);
    }

    /// The date helper's answer for `claim` set to `value`, at 1000 s with 60 s leeway.
    fn date_at_1000(claim: &DateClaim, value: f64) -> Result<Option<f64>, AuthError> {
        let mut claims = Map::new();
        claims.insert(claim.name.to_owned(), json!(value));
        check_date(&claims, claim, 1000.0, 60.0)
    }

    const NOT_DATES: [(&str, &str); 3] = [
        (
            "exp",
            "the token's exp is not a date (a number of seconds from 1970 to 9999)",
        ),
        (
            "nbf",
            "the token's nbf is not a date (a number of seconds from 1970 to 9999)",
        ),
        (
            "iat",
            "the token's iat is not a date (a number of seconds from 1970 to 9999)",
        ),
    ];

    #[test]
    fn valid_claims_pass_and_give_exp_in_whole_seconds() {
        assert_eq!(passes(&valid()), EXP_IN_AN_HOUR);
        assert_eq!(passes(&with("exp", json!(NOW as f64 + 10.75))), NOW + 10);
    }

    #[test]
    fn an_iss_other_than_the_issuer_exactly_is_refused() {
        for iss in [
            json!("https://idp.example.com/"),
            json!([ISSUER]),
            json!(null),
        ] {
            assert_refused(
                check(&with("iss", iss)),
                Rule::Jwt2,
                "the token's iss does not match its issuer exactly",
            );
        }
        let mut claims = valid();
        claims.remove("iss");
        assert_refused(
            check(&claims),
            Rule::Jwt2,
            "the token's iss does not match its issuer exactly",
        );
    }

    #[test]
    fn a_missing_exp_is_refused() {
        let mut claims = valid();
        claims.remove("exp");
        assert_refused(
            check(&claims),
            Rule::Jwt2,
            "the token has no exp claim, or it is not a number",
        );
    }

    #[test]
    fn an_exp_past_the_leeway_is_refused_as_expired() {
        for exp in [json!(NOW - LEEWAY - 1), json!(0)] {
            assert_refused(
                check(&with("exp", exp)),
                Rule::Jwt2,
                "the token has expired",
            );
        }
    }

    #[test]
    fn an_exp_past_but_within_the_leeway_passes_up_to_the_boundary() {
        assert_eq!(passes(&with("exp", json!(NOW - 1))), NOW - 1);
        assert_eq!(passes(&with("exp", json!(NOW - LEEWAY))), NOW - LEEWAY);
        assert_refused(
            check(&with("exp", json!(NOW as f64 - LEEWAY as f64 - 0.5))),
            Rule::Jwt2,
            "the token has expired",
        );
    }

    #[test]
    fn an_nbf_beyond_the_leeway_is_refused_as_not_valid_yet() {
        for nbf in [
            json!(NOW + LEEWAY + 1),
            json!(NOW as f64 + LEEWAY as f64 + 0.5),
        ] {
            assert_refused(
                check(&with("nbf", nbf)),
                Rule::Jwt2,
                "the token is not valid yet (nbf)",
            );
        }
    }

    #[test]
    fn an_nbf_in_the_future_within_the_leeway_passes_up_to_the_boundary() {
        assert_eq!(passes(&with("nbf", json!(NOW + LEEWAY))), EXP_IN_AN_HOUR);
        assert_eq!(passes(&with("nbf", json!(NOW + 1))), EXP_IN_AN_HOUR);
        assert_eq!(passes(&with("nbf", json!(NOW - 3600))), EXP_IN_AN_HOUR);
    }

    #[test]
    fn an_iat_beyond_the_leeway_is_refused_as_issued_in_the_future() {
        for iat in [
            json!(NOW + LEEWAY + 1),
            json!(NOW as f64 + LEEWAY as f64 + 0.5),
        ] {
            assert_refused(
                check(&with("iat", iat)),
                Rule::Jwt2,
                "the token was issued in the future (iat)",
            );
        }
    }

    #[test]
    fn an_iat_in_the_future_within_the_leeway_passes_up_to_the_boundary() {
        assert_eq!(passes(&with("iat", json!(NOW + LEEWAY))), EXP_IN_AN_HOUR);
        assert_eq!(passes(&with("iat", json!(NOW))), EXP_IN_AN_HOUR);
    }

    #[test]
    fn dates_that_are_not_numbers_are_refused_as_not_dates() {
        for (name, description) in NOT_DATES {
            for value in [json!("1700000000"), json!(null), json!(true), json!([NOW])] {
                assert_refused(check(&with(name, value)), Rule::Jwt2, description);
            }
        }
    }

    #[test]
    fn dates_before_1970_or_after_9999_are_refused_as_not_dates() {
        for (name, description) in NOT_DATES {
            for value in [
                json!(-1),
                json!(LAST_DATE + 1.0),
                json!(u64::MAX),
                json!(1e300),
            ] {
                assert_refused(check(&with(name, value)), Rule::Jwt2, description);
            }
        }
    }

    #[test]
    fn the_date_range_is_inclusive_at_1970_and_at_the_last_second_of_9999() {
        let date = |value: Value| numeric_date(&with("d", value), "d");
        assert_eq!(date(json!(0)), Ok(Some(0.0)));
        assert_eq!(date(json!(LAST_DATE)), Ok(Some(LAST_DATE)));
        assert_eq!(date(json!(253_402_300_799_u64)), Ok(Some(LAST_DATE)));
        assert_eq!(date(json!(253_402_300_800_u64)), Err(()));
        assert_eq!(date(json!(-0.5)), Err(()));
        assert_eq!(date(json!("0")), Err(()));
        assert_eq!(numeric_date(&valid(), "d"), Ok(None));
    }

    #[test]
    fn the_date_helper_bounds_each_side_of_now_by_the_leeway() {
        assert_eq!(date_at_1000(&EXP, 940.0).ok(), Some(Some(940.0)));
        assert_refused(
            date_at_1000(&EXP, 939.0),
            Rule::Jwt2,
            "the token has expired",
        );
        assert_eq!(date_at_1000(&NBF, 1060.0).ok(), Some(Some(1060.0)));
        assert_refused(
            date_at_1000(&NBF, 1061.0),
            Rule::Jwt2,
            "the token is not valid yet (nbf)",
        );
        assert_eq!(date_at_1000(&IAT, 1060.0).ok(), Some(Some(1060.0)));
        assert_refused(
            date_at_1000(&IAT, 1061.0),
            Rule::Jwt2,
            "the token was issued in the future (iat)",
        );
        // Far on the allowed side is fine for every claim.
        assert_eq!(date_at_1000(&EXP, 1e9).ok(), Some(Some(1e9)));
        assert_eq!(date_at_1000(&NBF, 0.0).ok(), Some(Some(0.0)));
        assert_eq!(date_at_1000(&IAT, 0.0).ok(), Some(Some(0.0)));
    }

    #[test]
    fn the_date_helper_leaves_an_absent_claim_to_the_caller() {
        let none = Map::new();
        for claim in [&EXP, &NBF, &IAT] {
            assert_eq!(check_date(&none, claim, 1000.0, 60.0).ok(), Some(None));
        }
    }

    #[test]
    fn exp_is_checked_before_nbf_and_nbf_before_iat() {
        let mut claims = with("exp", json!(NOW - LEEWAY - 1));
        claims.insert("nbf".to_owned(), json!("soon"));
        claims.insert("iat".to_owned(), json!(NOW + LEEWAY + 1));
        assert_refused(check(&claims), Rule::Jwt2, "the token has expired");
        let mut claims = with("nbf", json!(NOW + LEEWAY + 1));
        claims.insert("iat".to_owned(), json!("then"));
        assert_refused(
            check(&claims),
            Rule::Jwt2,
            "the token is not valid yet (nbf)",
        );
    }

    #[test]
    fn an_aud_that_is_not_a_string_or_strings_is_refused() {
        assert_eq!(passes(&with("aud", json!("api"))), EXP_IN_AN_HOUR);
        assert_eq!(passes(&with("aud", json!(["a", "b"]))), EXP_IN_AN_HOUR);
        for aud in [json!(1), json!(["a", 1]), json!({ "a": "b" })] {
            assert_refused(
                check(&with("aud", aud)),
                Rule::Aud2,
                "the token's aud is neither a string nor an array of strings",
            );
        }
    }

    #[test]
    fn an_id_token_is_refused() {
        assert_refused(
            check(&with("nonce", json!("n"))),
            Rule::Jwt4,
            "this is an OpenID Connect ID token (it has nonce or at_hash), not an access token",
        );
    }

    #[test]
    fn strict_rfc9068_needs_the_at_jwt_typ_and_the_claims_it_requires() {
        let strict = issuer(true);
        let mut full = valid();
        for (name, value) in [
            ("aud", json!("api")),
            ("sub", json!("user")),
            ("client_id", json!("app")),
            ("iat", json!(NOW)),
            ("jti", json!("id-1")),
        ] {
            full.insert(name.to_owned(), value);
        }
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let exp = check_claims(&strict, &header(Some(typ)), &full, NOW).ok();
            assert_eq!(exp, Some(EXP_IN_AN_HOUR));
        }
        for typ in [None, Some("JWT")] {
            assert_refused(
                check_claims(&strict, &header(typ), &full, NOW),
                Rule::Jwt4,
                "the token's typ is not at+jwt (RFC 9068)",
            );
        }
        let mut no_jti = full;
        no_jti.remove("jti");
        assert_refused(
            check_claims(&strict, &header(Some("at+jwt")), &no_jti, NOW),
            Rule::Jwt4,
            "the token has no jti claim, which RFC 9068 requires",
        );
        // Without strict RFC 9068 neither is needed.
        assert_eq!(passes(&valid()), EXP_IN_AN_HOUR);
    }
}
