//! [`Members`]: a JSON object read the way the most lenient server behind the
//! gatekeeper reads it (R-GW-1): in document order, duplicates kept, names compared
//! as case-insensitive decoders compare them.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::operation::shorten;

/// `name` as a case-insensitive reader compares it: ASCII and Unicode simple case
/// folding, plus the foldings that make a non-ASCII letter equal an ASCII one in the
/// decoders MCP servers use (Go's `encoding/json` and `strings.EqualFold` take `ſ`
/// U+017F for `s` and the Kelvin sign U+212A for `k`; Java's `equalsIgnoreCase` and
/// .NET's `OrdinalIgnoreCase` take the dotted and dotless I for `i`). `_` and `-` are
/// left out, as Go's `encoding/json/v2` does when it matches names case-insensitively.
pub(crate) fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            '\u{130}' | '\u{131}' => 'i',
            c => {
                let mut lower = c.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(l), None) => l,
                    _ => c,
                }
            }
        })
        .collect()
}

/// The members of one JSON object in document order, duplicates kept, values unparsed.
pub(crate) struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

impl<'a> Members<'a> {
    /// Refuses what lets two readers see different members (R-GW-1): a member that
    /// equals a known one only under case folding (`Name` for `name`: Go's
    /// `encoding/json` reads it as `name`), and two members that fold to one name
    /// (exact duplicates included; readers differ in which one wins).
    pub(crate) fn check(&self, known: &[&str], whose: &str) -> Result<(), String> {
        let known: Vec<(&str, String)> = known.iter().map(|k| (*k, fold(k))).collect();
        // A set, not a scan: a body may have a hundred thousand members.
        let mut seen = std::collections::HashSet::with_capacity(self.0.len());
        for (name, _) in &self.0 {
            let folded = fold(name);
            if let Some((like, _)) = known.iter().find(|(k, f)| k != name && *f == folded) {
                return Err(format!(
                    "{whose} has a member {:?} that differs from {like:?} only in letter \
                     case (or in '_' and '-'); a server that matches member names \
                     case-insensitively would read it as {like:?}, so the request is refused",
                    shorten(name)
                ));
            }
            if !seen.insert(folded) {
                return Err(format!(
                    "{whose} has the member {:?} more than once (or twice in different \
                     letter case); servers differ in which one they read",
                    shorten(name)
                ));
            }
        }
        Ok(())
    }

    /// [`Members::check`] for the members that fold to one of `known` only: the
    /// others may be anything, duplicates included (they decide nothing here).
    pub(crate) fn check_only(&self, known: &[&str], whose: &str) -> Result<(), String> {
        let known: Vec<(&str, String)> = known.iter().map(|k| (*k, fold(k))).collect();
        let mut seen = vec![false; known.len()];
        for (name, _) in &self.0 {
            let folded = fold(name);
            let Some(at) = known.iter().position(|(_, f)| *f == folded) else {
                continue;
            };
            let like = known[at].0;
            if like != name {
                return Err(format!(
                    "{whose} has a member {:?} that differs from {like:?} only in letter \
                     case (or in '_' and '-'); a server that matches member names \
                     case-insensitively would read it as {like:?}, so the request is refused",
                    shorten(name)
                ));
            }
            if std::mem::replace(&mut seen[at], true) {
                return Err(format!(
                    "{whose} has the member {like:?} more than once; servers differ in which \
                     one they read"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}
