//! What the small examples (hyper, grpc) share: their flags (`--listen ADDR`,
//! `--issuer URL` repeatable, `--help`), the issuers they trust, and their banner.

/// What the flags said.
pub struct Args {
    /// Address to listen on.
    pub listen: String,
    /// Issuers to trust through lazy discovery; none means the embedded issuer.
    pub issuers: Vec<String>,
}

/// Parses the command line; `default_listen` when `--listen` is not given.
pub fn parse(default_listen: &str) -> Result<Args, String> {
    let mut args = Args {
        listen: default_listen.into(),
        issuers: Vec::new(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value("--listen")?,
            "--issuer" => args.issuers.push(value("--issuer")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Trusts the `--issuer`s, or, without any, an embedded issuer at
/// `{origin}/embedded-issuer` whose tokens the banner prints.
pub fn trust(
    mut builder: mcp_gatekeeper::ResourceServerBuilder,
    args: &Args,
    origin: &str,
    kid: &str,
) -> Result<
    (
        mcp_gatekeeper::ResourceServerBuilder,
        Option<crate::embedded::Embedded>,
    ),
    mcp_gatekeeper::ConfigError,
> {
    let mut embedded = None;
    if args.issuers.is_empty() {
        let (issuer, trusted) =
            crate::embedded::Embedded::new(format!("{origin}/embedded-issuer"), kid)?;
        builder = builder.issuer(trusted);
        embedded = Some(issuer);
    }
    for issuer in &args.issuers {
        builder = builder.issuer(mcp_gatekeeper::Issuer::new(issuer));
    }
    Ok((builder, embedded))
}

/// The banner: `title`, the resource and its metadata URL, and for an embedded
/// issuer one token per `(label, scope)` for `subject`; ends with `ready`.
pub fn banner(
    title: &str,
    origin: &str,
    resource: &str,
    embedded: Option<&crate::embedded::Embedded>,
    subject: &str,
    tokens: &[(&str, &str)],
) -> String {
    use std::fmt::Write as _;
    let mut banner = String::new();
    let _ = writeln!(banner, "{title}");
    let _ = writeln!(banner, "  endpoint:  {origin}");
    let _ = writeln!(banner, "  resource:  {resource}");
    let metadata = mcp_gatekeeper::metadata_path(resource);
    let _ = writeln!(banner, "  metadata:  {origin}{metadata}");
    if let Some(embedded) = embedded {
        let _ = writeln!(banner, "  issuer:    {} (embedded)", embedded.issuer);
        for (label, scope) in tokens {
            let _ = writeln!(
                banner,
                "  {label}: {}",
                embedded.token(subject, resource, scope)
            );
        }
    }
    let _ = writeln!(banner, "ready");
    banner
}
