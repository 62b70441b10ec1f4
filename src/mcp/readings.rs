//! The readings of a resource URI (R-GW-2): every form a server behind the gatekeeper
//! may take a `resources/read` URI in, so that a scope rule over URIs holds under all
//! of them ([`McpScopes::resource`](super::McpScopes::resource)).

/// How a server may clean the path of a resource URI before using it.
#[derive(Clone, Copy)]
pub(crate) enum Cleaning {
    /// The path as it is.
    None,
    /// RFC 3986 §5.2.4 dot-segment removal: `.` and `..` segments go, empty segments
    /// stay (`/a//../b` is `/a/b`).
    Rfc3986,
    /// POSIX-style, as `path.Clean` in Go or `os.path.normpath` in Python: repeated
    /// slashes collapse first, then `..` pops a segment (`/a//../b` is `/b`).
    Posix,
}

/// How a server may treat `?` and `#` in a resource URI.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// As the query and fragment delimiters of a URI.
    Delimiters,
    /// As path characters: a server that strips `file://` and opens the rest as a
    /// path cleans `/public/x?/../../secret` to `/secret`.
    Path,
    /// As the end of the path, dropped with what follows: a server that opens
    /// `url.pathname` opens `/secret.txt` for `file:///secret.txt?x`.
    Cut,
}

/// Every reading of the resource URI `uri` a server behind the gatekeeper may take
/// (R-GW-2), handed to `visit` one at a time with whether it is the case-insensitive
/// file system's reading (matched against patterns read the same way). A server may
/// trim surrounding whitespace; decode percent-escapes (once, or again, and trim
/// again); take a backslash for a slash; strip every `file://` it finds; remove dot
/// segments as RFC 3986 says or clean the path as a file system path, with `?` and
/// `#` as delimiters, as path characters, or cut off with what follows; ignore the
/// scheme's letter case and, for `file:`, the host (`file:/x`, `file:///x`,
/// `file://localhost/x` and `file://any-host/x` are one local path); and, on a
/// case-insensitive file system (macOS, Windows), ignore the path's letter case and
/// the dots and spaces that end a segment.
pub(crate) fn visit_readings(uri: &str, visit: &mut dyn FnMut(&str, bool)) {
    let trim = |text: &str| {
        text.trim_matches(|c: char| c <= ' ' || c.is_whitespace() || c == '\u{FEFF}')
            .to_owned()
    };
    let mut decoded = vec![uri.to_owned()];
    for _ in 0..2 {
        let Some(last) = decoded.last() else { break };
        match percent_decode(last) {
            Some(next) if next != *last => decoded.push(next),
            _ => break,
        }
    }
    let mut texts = Vec::with_capacity(2 * decoded.len());
    for text in decoded {
        let trimmed = trim(&text);
        texts.push(text);
        if !texts.contains(&trimmed) {
            texts.push(trimmed);
        }
    }
    for text in &texts {
        let mut forms = vec![text.clone()];
        if text.contains('\\') {
            forms.push(text.replace('\\', "/"));
        }
        if text.matches("file://").count() > 1 {
            forms.push(format!("file://{}", text.replace("file://", "")));
        }
        for form in &forms {
            for tail in [Tail::Delimiters, Tail::Path, Tail::Cut] {
                for cleaning in [Cleaning::None, Cleaning::Rfc3986, Cleaning::Posix] {
                    visit(&canonical_uri(form, cleaning, tail), false);
                }
            }
            for tail in [Tail::Path, Tail::Cut] {
                let posix = canonical_uri(form, Cleaning::Posix, tail);
                if posix.starts_with("file:") {
                    visit(&case_insensitive(&posix), true);
                }
            }
        }
    }
}

/// The readings of `uri` (the URI as sent first), each once.
#[cfg(test)]
pub(crate) fn readings(uri: &str) -> Vec<String> {
    let mut all = vec![uri.to_owned()];
    visit_readings(uri, &mut |reading, _| {
        if !all.iter().any(|r| r == reading) {
            all.push(reading.to_owned());
        }
    });
    all
}

/// `uri` as a case-insensitive file system reads its path: in lower case, without
/// the dots and spaces that end a segment (Windows drops them).
pub(crate) fn case_insensitive(uri: &str) -> String {
    let (head, path) = match uri.find("://") {
        Some(at) => {
            let start = uri[at + 3..].find('/').map_or(uri.len(), |i| at + 3 + i);
            uri.split_at(start)
        }
        None => ("", uri),
    };
    let lower = |text: &str| -> String {
        text.chars()
            .map(|c| match c {
                // The foldings of APFS and NTFS that reach ASCII letters.
                '\u{17F}' => 's',
                '\u{212A}' => 'k',
                '\u{130}' | '\u{131}' => 'i',
                c => c,
            })
            .collect::<String>()
            .to_lowercase()
    };
    let path: Vec<String> = path
        .split('/')
        .map(|segment| {
            let trimmed = segment.trim_end_matches(['.', ' ']);
            match trimmed.is_empty() {
                true => lower(segment),
                false => lower(trimmed),
            }
        })
        .collect();
    format!("{head}{}", path.join("/"))
}

/// `text` with every `%XX` escape decoded; `None` when it has none.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[at], hex(bytes.get(at + 1)), hex(bytes.get(at + 2))) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                at += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                at += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// `uri` with its scheme (and an authority's host) in lower case, a `file:` URI's
/// host dropped (`file:///…`), user info and default ports dropped, and its path
/// cleaned by `cleaning`, up to the first `?` or `#` or through them (`tail`).
pub(crate) fn canonical_uri(uri: &str, cleaning: Cleaning, tail: Tail) -> String {
    let scheme_end = uri
        .find([':', '/', '?', '#'])
        .filter(|&i| uri.as_bytes()[i] == b':' && i > 0);
    let Some(scheme_end) = scheme_end else {
        return clean_tail(uri, cleaning, tail);
    };
    let scheme = uri[..scheme_end].to_ascii_lowercase();
    let rest = &uri[scheme_end + 1..];
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(after[..end].to_owned()), &after[end..])
        }
        None => (None, rest),
    };
    let path = clean_tail(path, cleaning, tail);
    match (scheme.as_str(), authority) {
        // A file server reads the path and ignores the host (`localhost`, a name, an
        // address), so every host form is the local path.
        ("file", _) => format!("file:///{}", path.trim_start_matches('/')),
        (_, Some(authority)) => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, h)| h);
            // Host names are case-insensitive where they are DNS names; a custom
            // scheme's authority (`repo://MyOrg/…`) is the server's to read.
            let (default_port, dns) = match scheme.as_str() {
                "https" | "wss" => (":443", true),
                "http" | "ws" => (":80", true),
                _ => ("", false),
            };
            let host = match default_port {
                "" => host,
                port => host.strip_suffix(port).unwrap_or(host),
            };
            match dns {
                true => format!("{scheme}://{}{path}", host.to_ascii_lowercase()),
                false => format!("{scheme}://{host}{path}"),
            }
        }
        (_, None) => format!("{scheme}:{path}"),
    }
}

/// The path of `text` cleaned by `cleaning`: up to its first `?` or `#`, the rest
/// kept as it is, or the whole of it when `tail` says they are path characters.
pub(crate) fn clean_tail(text: &str, cleaning: Cleaning, tail: Tail) -> String {
    let end = match tail {
        Tail::Delimiters | Tail::Cut => text.find(['?', '#']).unwrap_or(text.len()),
        Tail::Path => text.len(),
    };
    let (path, rest) = text.split_at(end);
    let rest = match tail {
        Tail::Cut => "",
        _ => rest,
    };
    let rooted = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    let parts = path.split('/').skip(usize::from(rooted));
    for segment in parts {
        trailing = matches!(segment, "." | "..");
        match (segment, cleaning) {
            (_, Cleaning::None) => segments.push(segment),
            ("" | ".", Cleaning::Posix) | (".", Cleaning::Rfc3986) => {}
            ("..", _) => {
                segments.pop();
            }
            (other, _) => segments.push(other),
        }
    }
    if trailing && !matches!(cleaning, Cleaning::None) {
        segments.push("");
    }
    let joined = segments.join("/");
    format!("{}{joined}{rest}", if rooted { "/" } else { "" })
}
