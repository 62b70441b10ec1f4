//! Cedar policies (feature `cedar`): an [`Authorize`] policy written in
//! [Cedar](https://www.cedarpolicy.com), with the entity model of ToolHive, so that its
//! users can bring their policies.
//!
//! ```
//! use mcp_gatekeeper::cedar::CedarPolicy;
//!
//! let policy = CedarPolicy::builder()
//!     .policies(r#"
//!         permit(principal, action == Action::"call_tool", resource)
//!           when { resource.readOnlyHint };
//!         permit(principal in THVGroup::"admins", action, resource);
//!         @scopes("mcp:delete")
//!         forbid(principal, action == Action::"call_tool", resource)
//!           when { resource.destructiveHint }
//!           unless { principal.claimset_scope.contains("mcp:delete") };
//!     "#)
//!     .multi_valued_claims(["scope"]) // claimset_scope: the scopes, a set
//!     .build()?;
//! let server = mcp_gatekeeper::ResourceServer::builder("https://mcp.example.com/mcp")
//!     .issuer(mcp_gatekeeper::Issuer::new("https://idp.example.com"))
//!     .authorize(policy) // tools/list is filtered through the policies
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The request, as Cedar sees it
//!
//! | | entity | attributes |
//! |---|---|---|
//! | principal | `Client::"<sub>"`, in `THVGroup::"<g>"` for each group | `claim_<name>` for each claim of the verified token (or introspection answer); `claimset_<name>` for the multi-valued ones |
//! | action | `Action::"call_tool"` (`tools/call`), `Action::"get_prompt"` (`prompts/get`), `Action::"read_resource"` (`resources/read`, `…/subscribe`, `…/unsubscribe`) | `operation`: the action's id |
//! | resource | `Tool::"<name>"`, `Prompt::"<name>"`, `Resource::"<uri>"`, in `MCP::"<server>"` when [`server_name`](CedarPolicyBuilder::server_name) is set | `name`, `operation`, `feature`; a tool's `readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`, and `arg_<name>` for the call's arguments the policies read; a resource's `uri` |
//! | context | | the principal's `claim_*`, and for `call_tool` the tool's `arg_*` |
//!
//! - Claims: strings, booleans, arrays (sets) and objects (records) as they are;
//!   whole numbers as `Long`, other numbers as `decimal` (four places, ToolHive's
//!   mapping of every number); `null`s left out. `claim_iss` is the issuer that
//!   vouched for the token: its `iss`, or for an introspection answer without one
//!   and a TokenReview user, the issuer configured.
//! - Groups, as ToolHive reads them but never fewer: the claims named with
//!   [`group_claims`](CedarPolicyBuilder::group_claims) (ToolHive's
//!   `group_claim_name`; a dotted path such as `realm_access.roles` reaches into
//!   objects), then `groups`, `roles`, `cognito:groups`, in turn up to the first
//!   that is an array (its strings are groups), then the
//!   [`role_claim`](CedarPolicyBuilder::role_claim). A lone string on the way is one
//!   group (ToolHive skips it); `null` and other shapes are skipped, the others with
//!   a warning (once per claim and type; later at `DEBUG`). A `claim_groups` that
//!   arrives as a string stays a `String`, so a policy that reads it as a set denies
//!   that caller.
//! - Tool hints come from the server's own `tools/list` answers, as the stack reads
//!   them to filter them (never from the client). A hint the server did not give has
//!   its MCP default: `readOnlyHint` false, `destructiveHint` true, `idempotentHint`
//!   false, `openWorldHint` true. So until a `tools/list` answer has gone through the
//!   stack (after a restart, say), a policy that permits by `readOnlyHint` denies the
//!   calls of a client that kept its tool list from before.
//! - Arguments (of `tools/call`; prompts have none): a top-level argument `x` of a
//!   string, boolean or number is `arg_x`, a `String` as the schema declares it (a
//!   boolean `"true"` or `"false"`, a number its decimal text, whole numbers without
//!   a fraction: `1`, `1.0` and `1e0` are `"1"`); any other value gives
//!   `arg_x_present`. Only the arguments the policies name are read, and a call whose
//!   arguments could not be read (not a JSON object) is denied. A replacement may not
//!   name an argument the policies at build did not.
//! - `tools/list`, `prompts/list`, `resources/list`, `initialize`, `ping`,
//!   `server/discover`, notifications and the other methods ToolHive lets through are
//!   allowed; the tools listed are always filtered through `call_tool`, without
//!   arguments (a `CedarPolicy` turns
//!   [`ResourceServerBuilder::filter_tools`](crate::ResourceServerBuilder::filter_tools)
//!   on: a client is never shown a tool the policies forbid, and the hints are
//!   learned from the lists). Any other method is refused.
//!
//! # Decisions
//!
//! - Allowed when a `permit` holds, no `forbid` does, and **no policy failed to
//!   evaluate** (an attribute a token lacks, a type error): any evaluation error
//!   denies, and is logged with the policy's id and why.
//! - Denied with `403` and no `insufficient_scope`, unless every `forbid` that holds
//!   carries `@scopes("...")`: then `403 insufficient_scope` asks for those scopes
//!   (step-up), in one challenge.
//! - A token without `sub` is denied (Cedar needs a principal).
//!
//! # Validation
//!
//! At build (and at each [`replace_policies`](CedarPolicy::replace_policies)), the
//! policies are validated strictly against a schema: [`CedarPolicy::schema`] (the
//! published one, [`CedarPolicy::published_schema`] with the default options and no
//! arguments; `docs/cedar/mcp-gatekeeper.cedarschema` in the repository), or your own
//! ([`schema`](CedarPolicyBuilder::schema)). A policy that names an attribute,
//! entity type or action the schema does not declare is an error naming the policy
//! and the attribute, not a silent deny; so is a policy the schema shows can never
//! hold, text with bidirectional control characters, and a template (nothing links
//! it here). The standard claims are declared (add yours
//! with [`claim`](CedarPolicyBuilder::claim)), and so is each `arg_*` the policies
//! name, as a `String`.

mod compile;
mod entities;
mod request;
mod schema;

use compile::{in_file, names, read};
use entities::{DEFAULT_GROUP_CLAIMS, Options};

pub(crate) use request::PrincipalCache;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Decision as CedarDecision, Entities, PolicyId, PolicySet};
use http::request::Parts;

use crate::authorize::Authorize;
use crate::decision::{Decide, Decision};
use crate::mcp::{Argument, McpOperation, OperationSource};
use crate::principal::Principal;

/// The most tools whose hints are kept.
const MAX_TOOLS: usize = 10_000;

/// The methods allowed without a policy (ToolHive's): lists are filtered instead.
const LET_THROUGH: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "completion/complete",
    "logging/setLevel",
    "roots/list",
];

/// Why policies could not be used: their text, the schema, the entities, or their
/// validation, with the policy's id and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarError(String);

impl std::fmt::Display for CedarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CedarError {}

/// The text of the policies: one Cedar text, or ToolHive's list of one policy per
/// string.
#[derive(Debug, Clone)]
enum Source {
    Text(String),
    List(Vec<String>),
}

/// Builds a [`CedarPolicy`]; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CedarPolicyBuilder {
    options: Options,
    source: Option<Source>,
    file: Option<std::path::PathBuf>,
    entities_json: Option<String>,
}

/// The policies, compiled.
pub(crate) struct Engine {
    /// Which compilation this is (a principal's Cedar entity is kept per engine).
    pub(crate) id: u64,
    policies: PolicySet,
    /// For each action, the policies whose scope can hold for it (the others cannot
    /// hold, nor fail: Cedar reads the scope first).
    by_action: HashMap<&'static str, PolicySet>,
    /// The entities of the actions.
    pub(crate) actions: HashMap<&'static str, cedar_policy::Entity>,
    /// For each action, resource and principal scope met, the policies whose scope can
    /// hold for them (a policy for `resource == Tool::"x"` is not evaluated for
    /// another tool, nor one for `principal in THVGroup::"admins"` for a non-member).
    #[allow(clippy::type_complexity)]
    by_target: RwLock<HashMap<(&'static str, Option<String>, Box<[bool]>), Arc<PolicySet>>>,
    /// The resources some policy names (`resource == …`).
    named: std::collections::HashSet<cedar_policy::EntityUid>,
    /// The principal scopes of the policies that have one (`principal == …`,
    /// `principal in …`, `principal is …`), and each one's index there.
    scoped: Vec<cedar_policy::PrincipalConstraint>,
    scoped_index: HashMap<PolicyId, usize>,
    /// The resources met, when no policy reads arguments: each is the same entity
    /// until its server describes it otherwise (its hints).
    pub(crate) resources: RwLock<HashMap<(&'static str, String), KeptResource>>,
    pub(crate) entities: Entities,
    pub(crate) arguments: Vec<Argument>,
    /// The claims the policies read (no other is converted).
    pub(crate) claims: BTreeSet<String>,
    pub(crate) types: entities::Types,
    /// The scopes each `@scopes`-annotated policy asks for.
    step_up: HashMap<PolicyId, Vec<String>>,
    schema: String,
}

/// A resource's entity, and the hints it was made with.
pub(crate) type KeptResource = (Option<Hints>, cedar_policy::Entity);

/// The hints of one tool, as its server listed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hints {
    pub(crate) read_only: bool,
    pub(crate) destructive: bool,
    pub(crate) idempotent: bool,
    pub(crate) open_world: bool,
}

/// The MCP defaults of hints a server did not give.
pub(crate) const DEFAULT_HINTS: Hints = Hints {
    read_only: false,
    destructive: true,
    idempotent: false,
    open_world: true,
};

pub(crate) struct Shared {
    pub(crate) options: Options,
    /// The arguments the policies read at build: the stack reads no other from
    /// calls, so a replacement may not name another.
    arguments: BTreeSet<String>,
    entities_json: Option<String>,
    engine: ArcSwap<Engine>,
    hints: RwLock<HashMap<String, Hints>>,
}

/// Cedar policies as an [`Authorize`] policy: see the [module docs](self). Cheap to
/// clone; clones share the policies, which
/// [`replace_policies`](CedarPolicy::replace_policies) replaces for all.
#[derive(Clone)]
pub struct CedarPolicy(pub(crate) Arc<Shared>);

impl std::fmt::Debug for CedarPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CedarPolicy")
            .field(
                "policies",
                &self.0.engine.load().policies.policies().count(),
            )
            .finish_non_exhaustive()
    }
}

impl CedarPolicyBuilder {
    /// The policies, as Cedar text (any number; their ids are `policy0`, `policy1`, …
    /// in order).
    pub fn policies(mut self, text: impl Into<String>) -> Self {
        self.source = Some(Source::Text(text.into()));
        self
    }

    /// The policies in the file at `path` (Cedar text), read by
    /// [`build`](Self::build); [`CedarPolicy::replace_policies_from_file`] reads it
    /// again.
    pub fn policy_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The policies as ToolHive's configuration lists them: one policy per string,
    /// whose id is `policy<index>`.
    pub fn policy_list<I, T>(mut self, policies: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.source = Some(Source::List(policies.into_iter().map(Into::into).collect()));
        self
    }

    /// Entities known in advance, in Cedar's JSON format (ToolHive's `entities_json`):
    /// group hierarchies, say. An entity the request builds (the principal, the
    /// action, the resource) replaces one of the same id.
    pub fn entities_json(mut self, json: impl Into<String>) -> Self {
        self.entities_json = Some(json.into());
        self
    }

    /// Claims read for the caller's groups before ToolHive's defaults `groups`,
    /// `roles`, `cognito:groups`: all are read in turn up to the first that is an
    /// array. ToolHive's `group_claim_name` is such a claim: it takes priority over the
    /// defaults and does not replace them, so a token without it is still read by
    /// them. A dotted name reaches into objects (an exact member name wins).
    pub fn group_claims<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut claims: Vec<String> = names.into_iter().map(Into::into).collect();
        for default in DEFAULT_GROUP_CLAIMS {
            if !claims.iter().any(|claim| claim == default) {
                claims.push(default.to_owned());
            }
        }
        self.options.group_claims = claims;
        self
    }

    /// A claim whose strings are groups too (Keycloak's `realm_access.roles`, say).
    pub fn role_claim(mut self, name: impl Into<String>) -> Self {
        self.options.role_claim = Some(name.into());
        self
    }

    /// The entity type of groups (default `THVGroup`).
    pub fn group_entity_type(mut self, name: impl Into<String>) -> Self {
        self.options.group_entity_type = name.into();
        self
    }

    /// Claims read as a space-separated string (`claim_NAME`) and a set
    /// (`claimset_NAME`), such as `scope` or `scp`.
    pub fn multi_valued_claims<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.options.multi_valued = names.into_iter().map(Into::into).collect();
        self
    }

    /// Declares the claim `name` in the schema with the Cedar type `cedar_type`
    /// (`String`, `Bool`, `decimal`, `Set<String>`, …), for policies that read it.
    pub fn claim(mut self, name: impl Into<String>, cedar_type: impl Into<String>) -> Self {
        self.options.claims.push((name.into(), cedar_type.into()));
        self
    }

    /// The MCP server's name: resources are in `MCP::"<name>"`.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.options.server = Some(name.into());
        self
    }

    /// Your own schema (Cedar's schema syntax), in place of the published one, to
    /// validate the policies against.
    pub fn schema(mut self, text: impl Into<String>) -> Self {
        self.options.schema = Some(text.into());
        self
    }

    /// Parses and validates the policies.
    ///
    /// # Errors
    ///
    /// A policy that does not parse, or names what the schema does not declare; a
    /// schema or entities that do not parse; no policy at all.
    pub fn build(self) -> Result<CedarPolicy, CedarError> {
        let source = match (self.source, &self.file) {
            (Some(_), Some(_)) => {
                return Err(CedarError(
                    "policies and a policy file both given: give one".into(),
                ));
            }
            (Some(source), None) => source,
            (None, Some(path)) => Source::Text(read(path)?),
            (None, None) => return Err(CedarError("no policies: give at least one".into())),
        };
        let engine = compile::compile(&self.options, &source, self.entities_json.as_deref())
            .map_err(|e| in_file(e, self.file.as_deref()))?;
        Ok(CedarPolicy(Arc::new(Shared {
            arguments: names(&engine.arguments),
            options: self.options,
            entities_json: self.entities_json,
            engine: ArcSwap::from_pointee(engine),
            hints: RwLock::new(HashMap::new()),
        })))
    }
}

impl CedarPolicy {
    /// A builder; see the [module docs](self).
    pub fn builder() -> CedarPolicyBuilder {
        CedarPolicyBuilder::default()
    }

    /// Replaces the policies (Cedar text), validated as at build: requests decided
    /// after it returns see the new ones, requests being decided keep the old ones.
    ///
    /// # Errors
    ///
    /// As [`CedarPolicyBuilder::build`], and new policies that read an argument
    /// (`arg_*`) those at build did not (the stack reads from calls only the
    /// arguments named when it was built); the policies in force stay.
    pub fn replace_policies(&self, text: &str) -> Result<(), CedarError> {
        let engine = compile::compile(
            &self.0.options,
            &Source::Text(text.to_owned()),
            self.0.entities_json.as_deref(),
        )?;
        let unread: Vec<String> = names(&engine.arguments)
            .difference(&self.0.arguments)
            .map(|name| format!("arg_{}", crate::mcp::shorten(name)))
            .collect();
        if !unread.is_empty() {
            return Err(CedarError(format!(
                "the policies read {}, which calls are not read for: the arguments read \
                 are fixed when the policy is built; build it (and the ResourceServer) \
                 again with these policies",
                unread.join(", ")
            )));
        }
        self.0.engine.store(Arc::new(engine));
        tracing::info!("the Cedar policies were replaced");
        Ok(())
    }

    /// Replaces the policies with those of the file at `path`, as
    /// [`replace_policies`](Self::replace_policies) does (for a reload on `SIGHUP`,
    /// say).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or as [`replace_policies`](Self::replace_policies);
    /// the policies in force stay.
    pub fn replace_policies_from_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<(), CedarError> {
        let path = path.as_ref();
        self.replace_policies(&read(path)?)
            .map_err(|e| in_file(e, Some(path)))
    }

    /// The published schema: the one of the default options, for policies that read no
    /// arguments.
    pub fn published_schema() -> String {
        schema::text(&Options::default(), &BTreeSet::new())
    }

    /// The schema the policies in force were validated against.
    pub fn schema(&self) -> String {
        self.0.engine.load().schema.clone()
    }

    pub(crate) fn hints(&self, tool: &str) -> Hints {
        self.0
            .hints
            .read()
            .ok()
            .and_then(|h| h.get(tool).copied())
            .unwrap_or(DEFAULT_HINTS)
    }

    fn decide(&self, principal: &Principal, operation: &McpOperation, post: bool) -> Decision {
        if post && operation.source() != OperationSource::Body {
            // mcp_operations(false), or an OperationLayer turned off: deciding on
            // nothing would let every call through.
            return Decision::deny(
                "the MCP operation of this POST was not read from its body, so the Cedar \
                 policies cannot decide it",
            );
        }
        let Some(method) = operation.method() else {
            // A GET of the event stream, a DELETE of the session: the token was enough.
            return Decision::Allow;
        };
        let (action, kind, feature, verb) = match method {
            "tools/call" => ("call_tool", "Tool", "tool", "call"),
            "prompts/get" => ("get_prompt", "Prompt", "prompt", "get"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                ("read_resource", "Resource", "resource", "read")
            }
            m if LET_THROUGH.contains(&m) || m.starts_with("notifications/") => {
                return Decision::Allow;
            }
            _ => {
                return Decision::deny(format!(
                    "no Cedar action covers {}",
                    crate::mcp::shorten(method)
                ));
            }
        };
        let Some(subject) = principal.subject() else {
            return Decision::deny("the token names no subject for the Cedar policies");
        };
        let Some(name) = operation.name() else {
            return Decision::deny("the request names no tool, prompt or resource");
        };
        let engine = self.0.engine.load();
        let target = request::Target {
            action,
            kind,
            feature,
            verb,
            name,
        };
        let request = request::Built::new(self, &engine, principal, subject, operation, &target);
        match request {
            Ok(built) => self.evaluate(&engine, &built, method, name),
            Err(why) => {
                tracing::warn!(%why, "a Cedar request could not be built: denied");
                Decision::deny("the request could not be put to the policies")
            }
        }
    }

    fn evaluate(
        &self,
        engine: &Engine,
        built: &request::Built,
        method: &str,
        name: &str,
    ) -> Decision {
        let response =
            Authorizer::new().is_authorized(&built.request, &built.policies, &built.entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        if !errors.is_empty() {
            tracing::warn!(
                method,
                name = %crate::mcp::shorten(name),
                // Cedar quotes values in its errors, some of them the client's.
                errors = %crate::mcp::shorten_to(&errors.join("; "), 2048),
                "a Cedar policy could not be evaluated: the request is denied"
            );
            return Decision::deny("a policy could not be evaluated for this request");
        }
        if response.decision() == CedarDecision::Allow {
            return Decision::Allow;
        }
        let mut reasons: Vec<&PolicyId> = diagnostics.reason().collect();
        reasons.sort_by_key(|id| id.to_string());
        let scopes: Option<Vec<String>> = (!reasons.is_empty())
            .then(|| {
                reasons
                    .iter()
                    .map(|id| engine.step_up.get(*id).cloned())
                    .collect::<Option<Vec<Vec<String>>>>()
            })
            .flatten()
            .map(|lists| {
                let mut all: Vec<String> = lists.into_iter().flatten().collect();
                all.sort_unstable();
                all.dedup();
                all
            });
        let ids: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        tracing::info!(method, name = %crate::mcp::shorten(name), policies = ?ids, "denied by the Cedar policies");
        match scopes {
            Some(scopes) if !scopes.is_empty() => Decision::insufficient_scope(scopes),
            _ => Decision::deny("denied by policy"),
        }
    }
}

impl Authorize for CedarPolicy {
    fn authorize(&self, principal: &Principal, operation: &McpOperation, parts: &Parts) -> Decide {
        Decide::ready(self.decide(principal, operation, parts.method == http::Method::POST))
    }

    fn arguments(&self) -> Vec<Argument> {
        self.0.engine.load().arguments.clone()
    }

    /// Always: the tools listed are those the policies let the caller call, and
    /// their hints are learned from the lists.
    fn filters_tool_lists(&self) -> bool {
        true
    }

    fn tool_listed(&self, name: &str, annotations: Option<&serde_json::Value>) {
        let hint = |key: &str, default: bool| {
            annotations
                .and_then(|a| a.get(key))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(default)
        };
        let hints = Hints {
            read_only: hint("readOnlyHint", DEFAULT_HINTS.read_only),
            destructive: hint("destructiveHint", DEFAULT_HINTS.destructive),
            idempotent: hint("idempotentHint", DEFAULT_HINTS.idempotent),
            open_world: hint("openWorldHint", DEFAULT_HINTS.open_world),
        };
        if let Ok(mut known) = self.0.hints.write()
            && (known.len() < MAX_TOOLS || known.contains_key(name))
        {
            known.insert(name.to_owned(), hints);
        }
    }
}
