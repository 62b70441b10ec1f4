//! Reading the configuration file: TOML, then the environment's overrides, then the
//! library's checks; every mistake names the file, the key and the fix.

use std::path::Path;

use mcp_gatekeeper::config::GatewayConfig;

/// The prefix of the environment variables that override keys of the file:
/// `MCP_GATEKEEPER__PROXY__LISTEN` is `proxy.listen`,
/// `MCP_GATEKEEPER__SERVERS__ALPHA__UPSTREAM` is `servers.alpha.upstream`,
/// `MCP_GATEKEEPER__ISSUERS__0__ISSUER` is `issuers[0].issuer`.
pub const ENV_PREFIX: &str = "MCP_GATEKEEPER__";

/// A configuration that could not be loaded; its text names the file and the key.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// Reads `path`, applies the overrides of `env` (the process's environment, or a test's
/// list), takes the `{ env = ... }` secrets from `env`, and checks the result (secrets
/// in files are read).
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<GatewayConfig, LoadError> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|error| LoadError(format!("{file}: cannot be read ({error})")))?;
    let env: Vec<(String, String)> = env.into_iter().collect();
    let overrides: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    let mut config: GatewayConfig = if overrides.is_empty() {
        // Straight from the text: errors point at the line.
        toml::from_str(&text)
            .map_err(|error| LoadError(format!("{file}: {}", error.to_string().trim_end())))?
    } else {
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|error| LoadError(format!("{file}: {}", error.to_string().trim_end())))?;
        for (name, value) in overrides.iter().copied() {
            let path = name.strip_prefix(ENV_PREFIX).unwrap_or_default();
            apply(&mut table, path, value)
                .map_err(|why| LoadError(format!("{file}: environment variable {name}: {why}")))?;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| {
                LoadError(format!(
                    "{file} (with the overrides of {}): {}",
                    overrides
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    error.to_string().trim_end()
                ))
            })?
    };
    let lookup = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    };
    config
        .resolve_secrets(lookup)
        .and_then(|()| config.validate())
        .map_err(|error| LoadError(format!("{file}: {error}")))?;
    Ok(config)
}

/// Sets the key at `path` (segments joined by `__`, matched to the file's keys without
/// regard to case; a number indexes an array) to `value`, read as a TOML value when it
/// is one (`5`, `true`, `["a", "b"]`) and as a string otherwise.
fn apply(table: &mut toml::Table, path: &str, value: &str) -> Result<(), String> {
    let segments: Vec<&str> = path.split("__").collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("an empty key segment (two '__' in a row?)".into());
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set(&mut root, &segments, parsed);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result
}

/// Sets the value at `segments` under `value`, making tables on the way.
fn set(value: &mut toml::Value, segments: &[&str], new: toml::Value) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        *value = new;
        return Ok(());
    };
    match value {
        toml::Value::Table(table) => {
            let key = table
                .keys()
                .find(|k| k.eq_ignore_ascii_case(first))
                .cloned()
                .unwrap_or_else(|| first.to_ascii_lowercase());
            let slot = table
                .entry(key)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            set(slot, rest, new)
        }
        toml::Value::Array(items) => {
            let index: usize = first
                .parse()
                .map_err(|_| format!("{first:?} should be an index of the array"))?;
            let length = items.len();
            let slot = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is past the array's {length} items"))?;
            set(slot, rest, new)
        }
        _ => Err(format!("{first:?} is under a key that is not a table")),
    }
}
