//! One request as Cedar sees it: the principal, the action and the resource as
//! entities (ToolHive's names and attributes), the context, and the request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};

use super::{CedarPolicy, Engine, Hints, entities};
use crate::mcp::{ArgumentValue, McpOperation};
use crate::principal::Principal;

/// What the request is for: the Cedar action, the resource's entity type, its
/// `feature` and `operation` attributes, and its name (or URI).
pub(super) struct Target<'a> {
    pub(super) action: &'static str,
    pub(super) kind: &'static str,
    pub(super) feature: &'a str,
    pub(super) verb: &'a str,
    pub(super) name: &'a str,
}

/// A principal as the policies of one engine see it: its entity, the claims of the
/// context, which principal-scoped policies can hold for it, and the requests of its
/// last targets. Kept with the [`Principal`] (the requests of a cached token share
/// it).
pub(crate) struct SeenPrincipal {
    engine: u64,
    entity: Entity,
    claims: HashMap<String, RestrictedExpression>,
    /// The context of a request without arguments: the claims.
    context: Context,
    /// For each of the engine's principal-scoped policies, whether its scope can hold
    /// for this principal.
    scope: Box<[bool]>,
    /// The requests of its last targets without arguments, the newest last.
    targets: Mutex<Vec<Arc<Built>>>,
}

/// How many targets' requests a principal keeps.
const KEPT_TARGETS: usize = 2;

/// The slot of a [`Principal`] for its [`SeenPrincipal`].
#[derive(Default)]
pub(crate) struct PrincipalCache(arc_swap::ArcSwapOption<SeenPrincipal>);

impl PrincipalCache {
    /// The principal as `engine` sees it, made by `make` unless kept already.
    fn get_or(
        &self,
        engine: u64,
        make: impl FnOnce() -> Result<SeenPrincipal, String>,
    ) -> Result<Arc<SeenPrincipal>, String> {
        if let Some(seen) = self.0.load_full().filter(|seen| seen.engine == engine) {
            return Ok(seen);
        }
        let seen = Arc::new(make()?);
        self.0.store(Some(seen.clone()));
        Ok(seen)
    }
}

/// One request, as entities and a Cedar request, with the policies that can hold for
/// it.
pub(super) struct Built {
    pub(super) request: Request,
    pub(super) entities: Entities,
    pub(super) policies: Arc<PolicySet>,
    /// The Cedar action's id.
    action: &'static str,
    /// The resource's kind and name, and its hints when it was built.
    kind: &'static str,
    name: Box<str>,
    hints: Option<Hints>,
}

impl Built {
    /// The request of `principal` (named `subject`) for `operation` on `target`: kept
    /// per principal and target when the call has no argument the policies read.
    pub(super) fn new(
        policy: &CedarPolicy,
        engine: &Engine,
        principal: &Principal,
        subject: &str,
        operation: &McpOperation,
        target: &Target<'_>,
    ) -> Result<Arc<Self>, String> {
        let seen = seen(policy, engine, principal, subject)?;
        let arguments = match target.kind {
            "Tool" => arguments(engine, operation)?,
            _ => HashMap::new(),
        };
        let hints = (target.kind == "Tool").then(|| policy.hints(target.name));
        if !arguments.is_empty() {
            return Self::build(policy, engine, &seen, target, hints, arguments).map(Arc::new);
        }
        let kept = |built: &&Arc<Built>| {
            built.action == target.action
                && built.kind == target.kind
                && *built.name == *target.name
                && built.hints == hints
        };
        if let Ok(targets) = seen.targets.lock()
            && let Some(built) = targets.iter().find(kept)
        {
            return Ok(built.clone());
        }
        // Entities given at build are in every request's entities: not kept per
        // principal, which would keep a copy of them per cached token.
        if !engine.entities.is_empty() {
            return Self::build(policy, engine, &seen, target, hints, HashMap::new()).map(Arc::new);
        }
        let built = Arc::new(Self::build(
            policy,
            engine,
            &seen,
            target,
            hints,
            HashMap::new(),
        )?);
        if let Ok(mut targets) = seen.targets.lock() {
            if targets.len() >= KEPT_TARGETS {
                targets.remove(0);
            }
            targets.push(built.clone());
        }
        Ok(built)
    }

    fn build(
        policy: &CedarPolicy,
        engine: &Engine,
        seen: &SeenPrincipal,
        target: &Target<'_>,
        hints: Option<Hints>,
        arguments: HashMap<String, RestrictedExpression>,
    ) -> Result<Self, String> {
        let types = &engine.types;
        let action_uid = entities::uid(&types.action, target.action);
        let resource_uid = entities::uid(types.of(target.kind), target.name);
        let error = |e: &dyn std::fmt::Display| e.to_string();
        let parents = parents(policy, types);
        let action_entity = engine
            .actions
            .get(target.action)
            .cloned()
            .ok_or_else(|| format!("no action {}", target.action))?;
        let resource_entity = match arguments.is_empty() {
            true => kept_resource(engine, target, hints, &resource_uid, parents)?,
            false => {
                let attributes = resource_attributes(target, hints, &arguments);
                Entity::new(resource_uid.clone(), attributes, parents).map_err(|e| error(&e))?
            }
        };
        let built = [seen.entity.clone(), action_entity, resource_entity];
        let entities = match engine.entities.is_empty() {
            true => Entities::from_entities(built, None),
            false => engine.entities.clone().upsert_entities(built, None),
        }
        .map_err(|e| error(&e))?;
        let context = match arguments.is_empty() {
            true => seen.context.clone(),
            false => Context::from_pairs(seen.claims.clone().into_iter().chain(arguments))
                .map_err(|e| error(&e))?,
        };
        let policies = engine.for_target(target.action, target.name, &resource_uid, &seen.scope);
        let request = Request::new(seen.entity.uid(), action_uid, resource_uid, context, None)
            .map_err(|e| error(&e))?;
        Ok(Self {
            request,
            entities,
            policies,
            action: target.action,
            kind: target.kind,
            name: target.name.into(),
            hints,
        })
    }
}

/// The parents of resources: `MCP::"<server>"` when the server is named.
fn parents(policy: &CedarPolicy, types: &entities::Types) -> HashSet<EntityUid> {
    let server = policy.0.options.server.as_deref();
    server
        .map(|server| entities::uid(&types.server, server))
        .into_iter()
        .collect()
}

/// The most resources whose entities are kept.
const MAX_RESOURCES: usize = 4096;

/// The longest name of a resource whose entity is kept (longer ones are made for
/// each request): 4096 entities stay within a few MiB.
const MAX_KEPT_NAME: usize = 256;

/// The entity of a resource of a request without arguments: kept per resource, made
/// again when its server describes it otherwise.
fn kept_resource(
    engine: &Engine,
    target: &Target<'_>,
    hints: Option<Hints>,
    uid: &EntityUid,
    parents: HashSet<EntityUid>,
) -> Result<Entity, String> {
    if target.name.len() > MAX_KEPT_NAME {
        let attributes = resource_attributes(target, hints, &HashMap::new());
        return Entity::new(uid.clone(), attributes, parents).map_err(|e| e.to_string());
    }
    let key = (target.kind, target.name.to_owned());
    if let Ok(kept) = engine.resources.read()
        && let Some((at, entity)) = kept.get(&key)
        && *at == hints
    {
        return Ok(entity.clone());
    }
    let attributes = resource_attributes(target, hints, &HashMap::new());
    let entity = Entity::new(uid.clone(), attributes, parents).map_err(|e| e.to_string())?;
    if let Ok(mut kept) = engine.resources.write()
        && (kept.len() < MAX_RESOURCES || kept.contains_key(&key))
    {
        kept.insert(key, (hints, entity.clone()));
    }
    Ok(entity)
}

/// The `arg_*` of a `tools/call`: the arguments the policies name that it has. `Err`
/// when they were not read (arguments that are no JSON object, or named only by
/// policies that replaced those the stack was built with): the call is denied, never
/// decided as if it had none.
fn arguments(
    engine: &Engine,
    operation: &McpOperation,
) -> Result<HashMap<String, RestrictedExpression>, String> {
    let mut arguments = HashMap::new();
    for argument in &engine.arguments {
        match operation.argument(&argument.name) {
            ArgumentValue::Present(value) => {
                entities::argument(&argument.name, value, &mut arguments);
            }
            ArgumentValue::Absent => {}
            // `tools/list` filtering asks about calls whose arguments are unknown.
            ArgumentValue::NotRead if operation.is_listing() => {}
            ArgumentValue::NotRead => {
                return Err(format!(
                    "the argument {} the policies read was not read from the call \
                     (arguments that are not a JSON object, or an OperationLayer not \
                     told of the policies)",
                    crate::mcp::shorten(&argument.name)
                ));
            }
        }
    }
    Ok(arguments)
}

/// `principal` (named `subject`) as `engine` sees it: kept with the principal, made
/// on first use.
fn seen(
    policy: &CedarPolicy,
    engine: &Engine,
    principal: &Principal,
    subject: &str,
) -> Result<Arc<SeenPrincipal>, String> {
    let options = &policy.0.options;
    principal.cedar_cache().get_or(engine.id, || {
        let uid = entities::uid(&engine.types.client, subject);
        let claims = entities::claims(
            principal.claims(),
            principal.issuer(),
            options,
            &engine.claims,
        );
        let groups = entities::groups(principal.claims(), options, &engine.types.group);
        let scope = engine.principal_scope(&uid, &groups);
        let entity = Entity::new(uid, claims.clone(), groups).map_err(|e| e.to_string())?;
        let context = Context::from_pairs(claims.clone()).map_err(|e| e.to_string())?;
        Ok(SeenPrincipal {
            engine: engine.id,
            entity,
            claims,
            context,
            scope,
            targets: Mutex::new(Vec::with_capacity(KEPT_TARGETS)),
        })
    })
}

/// The entity of the action `action`: its `operation` attribute is its id.
pub(super) fn action(types: &super::entities::Types, action: &str) -> Result<Entity, String> {
    Entity::new(
        entities::uid(&types.action, action),
        HashMap::from([("operation".to_owned(), string(action))]),
        HashSet::new(),
    )
    .map_err(|e| e.to_string())
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// The attributes of the resource: `name`, `operation`, `feature`; a tool's hints
/// (as its server listed them, else MCP's defaults) and arguments, a prompt's
/// arguments, a resource's `uri`.
fn resource_attributes(
    target: &Target<'_>,
    hints: Option<Hints>,
    arguments: &HashMap<String, RestrictedExpression>,
) -> HashMap<String, RestrictedExpression> {
    let mut attributes: HashMap<String, RestrictedExpression> = HashMap::from([
        ("name".to_owned(), string(target.name)),
        ("operation".to_owned(), string(target.verb)),
        ("feature".to_owned(), string(target.feature)),
    ]);
    match target.kind {
        "Tool" => {
            let hints = hints.unwrap_or(super::DEFAULT_HINTS);
            for (attribute, value) in [
                ("readOnlyHint", hints.read_only),
                ("destructiveHint", hints.destructive),
                ("idempotentHint", hints.idempotent),
                ("openWorldHint", hints.open_world),
            ] {
                attributes.insert(attribute.into(), RestrictedExpression::new_bool(value));
            }
            attributes.extend(arguments.clone());
        }
        "Prompt" => attributes.extend(arguments.clone()),
        _ => {
            attributes.insert("uri".into(), string(target.name));
        }
    }
    attributes
}
