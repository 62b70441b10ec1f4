//! The fields the stack records on its `mcp_gatekeeper` span (`key_tier`, `rule`,
//! `decision`, `issuer`), caught for `explain` by a tracing layer; other logs go to
//! standard error at `warn` (or `RUST_LOG`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The fields caught since the last [`Fields::clear`].
#[derive(Clone, Default, Debug)]
pub struct Fields(Arc<Mutex<BTreeMap<String, String>>>);

impl Fields {
    /// Forgets what was caught.
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// What was caught, and forgets it.
    pub fn take(&self) -> BTreeMap<String, String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The names caught.
const CAUGHT: [&str; 4] = ["key_tier", "rule", "decision", "issuer"];

impl Visit for &Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if CAUGHT.contains(&field.name()) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if CAUGHT.contains(&field.name()) {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

struct Catch(Fields);

impl<S: tracing::Subscriber> Layer<S> for Catch {
    fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        if attributes.metadata().name() == "mcp_gatekeeper" {
            attributes.record(&mut &self.0);
        }
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        values.record(&mut &self.0);
    }
}

/// The fields the process's subscriber catches, installed on first use. Should
/// another subscriber be installed already, nothing is caught (explain then says
/// less about key tiers and rules, nothing wrong).
pub fn fields() -> Fields {
    static FIELDS: std::sync::OnceLock<Fields> = std::sync::OnceLock::new();
    FIELDS.get_or_init(install).clone()
}

fn install() -> Fields {
    let fields = Fields::default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(Catch(fields.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .try_init();
    fields
}
