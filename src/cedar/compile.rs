//! Policies to an [`Engine`]: parsed, declared in the schema, validated strictly, and
//! indexed by action.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Entities, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, Schema, ValidationMode,
    ValidationWarning, Validator,
};

use super::{CedarError, Engine, Options, Source, entities, request, schema};
use crate::mcp::Argument;

/// Parses, declares and validates the policies of `source` for `options`.
pub(super) fn compile(
    options: &Options,
    source: &Source,
    entities_json: Option<&str>,
) -> Result<Engine, CedarError> {
    let (policies, text) = parse(source)?;
    if policies.policies().next().is_none() {
        return Err(CedarError("no policies: give at least one".into()));
    }
    let arguments: BTreeSet<String> = schema::arguments(&text);
    let claims = schema::claims(&text);
    let types = entities::Types::new(&options.group_entity_type).map_err(CedarError)?;
    let schema_text = match &options.schema {
        Some(own) => own.clone(),
        None => schema::text(options, &arguments),
    };
    validate(&policies, &schema_text)?;
    let entities = match entities_json {
        Some(json) if !json.trim().is_empty() => Entities::from_json_str(json, None)
            .map_err(|e| CedarError(format!("the Cedar entities do not parse: {e}")))?,
        _ => Entities::empty(),
    };
    let step_up = step_ups(&policies);
    let Scopes {
        named,
        scoped,
        scoped_index,
    } = scopes(&policies);
    let by_action = ACTIONS
        .iter()
        .map(|action| Ok((*action, for_action(&policies, &types, action)?)))
        .collect::<Result<_, CedarError>>()?;
    let actions = ACTIONS
        .iter()
        .map(|id| Ok((*id, request::action(&types, id).map_err(CedarError)?)))
        .collect::<Result<_, CedarError>>()?;
    static COMPILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    Ok(Engine {
        id: COMPILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        policies,
        by_action,
        actions,
        by_target: RwLock::new(HashMap::new()),
        scoped_index,
        scoped,
        named,
        resources: RwLock::new(HashMap::new()),
        entities,
        arguments: arguments.into_iter().map(Argument::new).collect(),
        claims,
        types,
        step_up,
        schema: schema_text,
    })
}

/// What the policies' scopes name: the resources of `resource == …`, and the
/// principal scopes other than `principal`, with each one's index by policy.
struct Scopes {
    named: std::collections::HashSet<EntityUid>,
    scoped: Vec<PrincipalConstraint>,
    scoped_index: HashMap<PolicyId, usize>,
}

fn scopes(policies: &PolicySet) -> Scopes {
    let named = policies
        .policies()
        .filter_map(|p| match p.resource_constraint() {
            cedar_policy::ResourceConstraint::Eq(one) => Some(one),
            _ => None,
        })
        .collect();
    let mut scoped = Vec::new();
    let mut scoped_index = HashMap::new();
    for policy in policies.policies() {
        let scope = policy.principal_constraint();
        if !matches!(scope, PrincipalConstraint::Any) {
            scoped_index.insert(policy.id().clone(), scoped.len());
            scoped.push(scope);
        }
    }
    Scopes {
        named,
        scoped,
        scoped_index,
    }
}

/// The most (action, resource) pairs whose policies are kept apart.
const MAX_TARGETS: usize = 4096;

impl Engine {
    /// The policies whose scope can hold for `action` on `resource` (named `name`), by
    /// a principal for whose principal-scoped policies `scope` says whether theirs can
    /// hold.
    pub(super) fn for_target(
        &self,
        action: &'static str,
        name: &str,
        resource: &EntityUid,
        scope: &[bool],
    ) -> Arc<PolicySet> {
        // Resources no `resource == …` names share their subset: a client naming
        // many tools cannot grow this.
        let named = self.named.contains(resource).then(|| name.to_owned());
        let key = (action, named, Box::<[bool]>::from(scope));
        if let Some(kept) = self
            .by_target
            .read()
            .ok()
            .and_then(|k| k.get(&key).cloned())
        {
            return kept;
        }
        let for_action = self.by_action.get(action).unwrap_or(&self.policies);
        let applies = |policy: &&Policy| {
            let for_resource = match policy.resource_constraint() {
                cedar_policy::ResourceConstraint::Eq(one) => &one == resource,
                _ => true,
            };
            // A policy missing from the index has no principal scope.
            let for_principal = self
                .scoped_index
                .get(policy.id())
                .is_none_or(|index| scope.get(*index).copied().unwrap_or(true));
            for_resource && for_principal
        };
        let subset = PolicySet::from_policies(for_action.policies().filter(applies).cloned())
            .unwrap_or_else(|_| for_action.clone());
        let subset = Arc::new(subset);
        if let Ok(mut kept) = self.by_target.write()
            && kept.len() < MAX_TARGETS
        {
            kept.insert(key, subset.clone());
        }
        subset
    }

    /// For each principal-scoped policy, whether its scope can hold for the principal
    /// `uid` in `groups`: `principal == E` only for `E`, `principal in G` only for `G`,
    /// a member of `G` or of a group under `G` (by the entities given at build), and
    /// `principal is T` only for the type `T`. A scope that cannot hold makes its
    /// policy false without evaluating anything else (Cedar reads the scope first), so
    /// leaving that policy out decides the same.
    pub(super) fn principal_scope(
        &self,
        uid: &EntityUid,
        groups: &std::collections::HashSet<EntityUid>,
    ) -> Box<[bool]> {
        let mut ancestors: std::collections::HashSet<&EntityUid> = groups.iter().collect();
        for group in groups {
            if let Some(above) = self.entities.ancestors(group) {
                ancestors.extend(above);
            }
        }
        let within = |group: &EntityUid| group == uid || ancestors.contains(group);
        self.scoped
            .iter()
            .map(|scope| match scope {
                PrincipalConstraint::Any => true,
                PrincipalConstraint::Eq(one) => one == uid,
                PrincipalConstraint::In(group) => within(group),
                PrincipalConstraint::Is(kind) => kind == uid.type_name(),
                PrincipalConstraint::IsIn(kind, group) => kind == uid.type_name() && within(group),
            })
            .collect()
    }
}

/// The actions of requests.
pub(super) const ACTIONS: [&str; 3] = ["call_tool", "get_prompt", "read_resource"];

/// The policies of `policies` whose action scope can hold for `action`.
fn for_action(
    policies: &PolicySet,
    types: &entities::Types,
    action: &str,
) -> Result<PolicySet, CedarError> {
    let uid = entities::uid(&types.action, action);
    let applies = |policy: &&Policy| match policy.action_constraint() {
        cedar_policy::ActionConstraint::Any => true,
        cedar_policy::ActionConstraint::Eq(one) => one == uid,
        cedar_policy::ActionConstraint::In(some) => some.contains(&uid),
    };
    PolicySet::from_policies(policies.policies().filter(applies).cloned())
        .map_err(|e| CedarError(format!("the Cedar policies: {e}")))
}

/// Checks `policies` strictly against the schema `schema_text`; the error lists every
/// problem, each naming its policy.
fn validate(policies: &PolicySet, schema_text: &str) -> Result<(), CedarError> {
    let (schema, _warnings) = Schema::from_cedarschema_str(schema_text)
        .map_err(|e| CedarError(format!("the Cedar schema does not parse: {e}")))?;
    let validated = Validator::new(schema).validate(policies, ValidationMode::Strict);
    let described = |problem: &dyn miette::Diagnostic| {
        let help = problem
            .help()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        format!("{problem}{help}")
    };
    let mut problems: Vec<String> = validated
        .validation_errors()
        .map(|error| described(error))
        .collect();
    for warning in validated.validation_warnings() {
        // A policy that can never hold (a `forbid` that would never apply, say), or
        // text that reads otherwise than it runs, is refused; other warnings logged.
        let refused = matches!(
            warning,
            ValidationWarning::ImpossiblePolicy(_)
                | ValidationWarning::BidiCharsInString(_)
                | ValidationWarning::BidiCharsInIdentifier(_)
        );
        match refused {
            true => problems.push(described(warning)),
            false => tracing::warn!(warning = %described(warning), "a Cedar policy"),
        }
    }
    // A template applies only once linked, and nothing links it here.
    for template in policies.templates() {
        problems.push(format!(
            "{} is a template (it has ?principal or ?resource): it would never apply, \
             write the entity instead",
            template.id()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CedarError(format!(
        "the Cedar policies do not hold against the schema: {}",
        problems.join("; ")
    )))
}

/// The scopes each policy annotated `@scopes("...")` asks for.
fn step_ups(policies: &PolicySet) -> HashMap<PolicyId, Vec<String>> {
    policies
        .policies()
        .filter_map(|p| {
            let scopes: Vec<String> = p
                .annotation("scopes")?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Some((p.id().clone(), scopes))
        })
        .collect()
}

/// The policy set of `source`, and its whole text.
fn parse(source: &Source) -> Result<(PolicySet, String), CedarError> {
    match source {
        Source::Text(text) => {
            let set = text
                .parse::<PolicySet>()
                .map_err(|errors| unparsed("the Cedar policies do not parse", &errors, text))?;
            Ok((set, text.clone()))
        }
        Source::List(list) => {
            let mut set = PolicySet::new();
            for (index, text) in list.iter().enumerate() {
                let id = PolicyId::new(format!("policy{index}"));
                let policy = Policy::parse(Some(id), text).map_err(|errors| {
                    unparsed(
                        &format!("Cedar policy {index} does not parse"),
                        &errors,
                        text,
                    )
                })?;
                set.add(policy)
                    .map_err(|e| CedarError(format!("Cedar policy {index}: {e}")))?;
            }
            Ok((set, list.join("\n")))
        }
    }
}

/// `what` went wrong parsing `text`, then each error with its line and column.
fn unparsed(what: &str, errors: &cedar_policy::ParseErrors, text: &str) -> CedarError {
    let each: Vec<String> = errors.iter().map(|e| located(e, text)).collect();
    CedarError(format!("{what}: {}", each.join("; ")))
}

/// `error` with the line and column of `text` it points at.
fn located(error: &dyn miette::Diagnostic, text: &str) -> String {
    let at = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    match at.and_then(|offset| text.get(..offset)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {error}")
        }
        None => error.to_string(),
    }
}

/// The text of the policy file at `path`; the error names the file.
pub(super) fn read(path: &std::path::Path) -> Result<String, CedarError> {
    std::fs::read_to_string(path).map_err(|e| {
        CedarError(format!(
            "the Cedar policy file {} cannot be read: {e}",
            path.display()
        ))
    })
}

/// The names of `arguments`.
pub(super) fn names(arguments: &[Argument]) -> BTreeSet<String> {
    arguments.iter().map(|a| a.name().to_owned()).collect()
}

/// `error`, naming the policy file it is in, if any.
pub(super) fn in_file(error: CedarError, path: Option<&std::path::Path>) -> CedarError {
    match path {
        Some(path) => CedarError(format!("{}: {}", path.display(), error.0)),
        None => error,
    }
}
