//! The request as Cedar entities, with ToolHive's names: the principal `Client::"sub"`
//! with `claim_*` attributes and its groups as parents, the action, and the tool,
//! prompt or resource with its attributes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};

/// The claims ToolHive reads for groups when no configured one is an array.
pub(super) const DEFAULT_GROUP_CLAIMS: [&str; 3] = ["groups", "roles", "cognito:groups"];

/// How claims, groups and resources become entities.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) group_claims: Vec<String>,
    pub(crate) role_claim: Option<String>,
    pub(crate) group_entity_type: String,
    pub(crate) multi_valued: Vec<String>,
    pub(crate) claims: Vec<(String, String)>,
    pub(crate) server: Option<String>,
    pub(crate) schema: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            group_claims: DEFAULT_GROUP_CLAIMS.map(str::to_owned).to_vec(),
            role_claim: None,
            group_entity_type: "THVGroup".into(),
            multi_valued: Vec::new(),
            claims: Vec::new(),
            server: None,
            schema: None,
        }
    }
}

/// How deep a claim's arrays and objects are followed (ToolHive's bound).
const MAX_DEPTH: usize = 10;

/// The entity types of requests, parsed once.
pub(crate) struct Types {
    pub(super) client: EntityTypeName,
    pub(super) action: EntityTypeName,
    pub(super) tool: EntityTypeName,
    pub(super) prompt: EntityTypeName,
    pub(super) resource: EntityTypeName,
    pub(super) server: EntityTypeName,
    pub(super) group: EntityTypeName,
}

impl Types {
    /// The types, with `group` as the groups' type; `Err` names one that is no type name.
    pub(super) fn new(group: &str) -> Result<Self, String> {
        let name = |n: &str| {
            EntityTypeName::from_str(n)
                .map_err(|_| format!("{n:?} is not a Cedar entity type name"))
        };
        Ok(Self {
            client: name("Client")?,
            action: name("Action")?,
            tool: name("Tool")?,
            prompt: name("Prompt")?,
            resource: name("Resource")?,
            server: name("MCP")?,
            group: name(group)?,
        })
    }
}

impl Types {
    /// The type of resources named `kind` (`Tool`, `Prompt`, else `Resource`).
    pub(super) fn of(&self, kind: &str) -> &EntityTypeName {
        match kind {
            "Tool" => &self.tool,
            "Prompt" => &self.prompt,
            _ => &self.resource,
        }
    }
}

/// The entity `kind::"id"` (any string is an id).
pub(super) fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

/// A JSON value as Cedar reads it: strings, booleans, whole numbers as `Long`, other
/// numbers as `decimal` (four places, cut toward zero, as ToolHive reads every number),
/// arrays as sets, objects as records; `null`, and numbers out of `decimal`'s range,
/// have none.
pub(super) fn value(json: &Value, depth: usize) -> Option<RestrictedExpression> {
    match json {
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(whole) => Some(RestrictedExpression::new_long(whole)),
            None => decimal(n.as_f64()?).map(RestrictedExpression::new_decimal),
        },
        Value::Array(items) if depth < MAX_DEPTH => Some(RestrictedExpression::new_set(
            items.iter().filter_map(|item| value(item, depth + 1)),
        )),
        Value::Object(members) if depth < MAX_DEPTH => {
            let fields = members
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), value(v, depth + 1)?)));
            RestrictedExpression::new_record(fields).ok()
        }
        _ => None,
    }
}

/// `number` as a Cedar `decimal` literal: four places, cut toward zero; none when it
/// does not fit (Cedar's range is ±922337203685477.5807).
pub(super) fn decimal(number: f64) -> Option<String> {
    let scaled = (number * 10_000.0).trunc();
    if !scaled.is_finite() || scaled.abs() >= 9.2e18 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // checked just above
    let scaled = scaled as i64;
    let sign = if scaled < 0 { "-" } else { "" };
    let magnitude = scaled.unsigned_abs();
    Some(format!(
        "{sign}{}.{:04}",
        magnitude / 10_000,
        magnitude % 10_000
    ))
}

/// The principal's attributes from its claims named in `read` (the policies read no
/// other): `claim_NAME` for each, and for a multi-valued claim `claim_NAME` (joined by
/// spaces) and `claimset_NAME` (a set). When the claims have no `iss`, the token's
/// `iss` is `issuer`, the issuer that vouched for it: RFC 7662 lets an introspection
/// answer leave it out (Google's does; the stack refuses one that names another
/// issuer, as it refuses such a JWT), and a TokenReview's user has none.
pub(super) fn claims(
    claims: &Map<String, Value>,
    issuer: &str,
    options: &Options,
    read: &BTreeSet<String>,
) -> HashMap<String, RestrictedExpression> {
    let vouched = (!claims.contains_key("iss") && !issuer.is_empty())
        .then(|| ("iss".to_owned(), Value::String(issuer.to_owned())));
    let mut attributes = HashMap::new();
    for (name, json) in claims
        .iter()
        .chain(vouched.as_ref().map(|(name, json)| (name, json)))
        .filter(|(name, _)| read.contains(*name))
    {
        if options.multi_valued.contains(name) {
            let words: Vec<String> = match json {
                Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => continue,
            };
            let joined = match json {
                Value::String(s) => s.clone(),
                _ => words.join(" "),
            };
            attributes.insert(
                format!("claim_{name}"),
                RestrictedExpression::new_string(joined),
            );
            attributes.insert(
                format!("claimset_{name}"),
                RestrictedExpression::new_set(
                    words.into_iter().map(RestrictedExpression::new_string),
                ),
            );
        } else if let Some(converted) = value(json, 0) {
            attributes.insert(format!("claim_{name}"), converted);
        }
    }
    attributes
}

/// The groups of the caller, as parents `GROUP_TYPE::"g"`, read as ToolHive reads
/// them but never fewer: the group claims in turn (an exact name, else a dotted path
/// such as `realm_access.roles`) up to the first that is an array, whose strings are
/// groups, and then the role claim if one is named. A lone string on the way is one
/// group (ToolHive skips it, so `{"groups": "staff", "roles": ["blocked"]}` is in
/// both `staff` and `blocked`, and a forbid on `blocked` holds as in ToolHive);
/// `null` and other shapes are skipped, the others with a warning.
pub(super) fn groups(
    claims: &Map<String, Value>,
    options: &Options,
    group_type: &EntityTypeName,
) -> HashSet<EntityUid> {
    let mut names: Vec<&str> = Vec::new();
    for claim in &options.group_claims {
        if let Some(value) = find_claim(claims, claim)
            && group_names(claim, value, &mut names)
        {
            break;
        }
    }
    if let Some(role) = options.role_claim.as_deref()
        && let Some(value) = find_claim(claims, role)
    {
        group_names(role, value, &mut names);
    }
    names
        .into_iter()
        .map(|group| uid(group_type, group))
        .collect()
}

/// The group claims (by name and JSON type) of another shape reported at `WARN`;
/// later ones go to `DEBUG`, since the groups of an introspected token are read on
/// each request. Bounded: the names come from the configuration, the types are four.
static ODD_GROUP_CLAIMS_WARNED: Mutex<BTreeSet<(String, &'static str)>> =
    Mutex::new(BTreeSet::new());

/// Adds to `names` the group names of the claim `claim`: the strings of an array
/// (others left out, as ToolHive does), or a lone string. True for an array.
fn group_names<'a>(claim: &str, value: &'a Value, names: &mut Vec<&'a str>) -> bool {
    match value {
        Value::Array(items) => {
            names.extend(items.iter().filter_map(Value::as_str));
            return true;
        }
        Value::String(one) => names.push(one),
        Value::Null => {}
        other => {
            let shape = json_shape(other);
            let first = ODD_GROUP_CLAIMS_WARNED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((claim.to_owned(), shape));
            if first {
                tracing::warn!(claim, shape, "{ODD_GROUP_CLAIM}");
            } else {
                tracing::debug!(claim, shape, "{ODD_GROUP_CLAIM}");
            }
        }
    }
    false
}

const ODD_GROUP_CLAIM: &str = "the group claim is neither an array of strings nor a string: the caller is in no group through it";

/// The JSON type of `value`, for a log line (never the value itself).
fn json_shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The claim `name`: a member of that exact name, else a path of members by dots.
fn find_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(found) = claims.get(name) {
        return Some(found);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// An argument as ToolHive exposes it, typed as the schema declares it (`String`):
/// `arg_NAME` for a string as it is, a boolean as `"true"` or `"false"`, a number as
/// its decimal text, whole numbers without a fraction (`1`, `1.0` and `1e0` are all
/// `"1"`, as lenient servers read them); `arg_NAME_present` for anything else.
pub(super) fn argument(name: &str, json: &Value, into: &mut HashMap<String, RestrictedExpression>) {
    let text = match json {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        _ => {
            into.insert(
                format!("arg_{name}_present"),
                RestrictedExpression::new_bool(true),
            );
            return;
        }
    };
    into.insert(
        format!("arg_{name}"),
        RestrictedExpression::new_string(text),
    );
}

/// `number` as decimal text, a whole number without a fraction (Rust writes `1.0`
/// as `1`).
fn number_text(number: &serde_json::Number) -> String {
    if let Some(whole) = number.as_i64() {
        return whole.to_string();
    }
    if let Some(whole) = number.as_u64() {
        return whole.to_string();
    }
    number
        .as_f64()
        .map_or_else(|| number.to_string(), |f| f.to_string())
}
