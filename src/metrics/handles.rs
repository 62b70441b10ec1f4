//! The handles of the series recorded on every request, kept per thread: building a
//! key and finding it in the recorder costs more than the rest of a cached token's
//! check. A thread's handles are dropped when [`enable`](super::enable) is called again (a new
//! recorder). Keyed by the addresses of the `'static` name and label values (one
//! value may have two addresses: two handles of one series, which is harmless) and
//! by the one label value that comes from configuration (an issuer, a listed tool).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use ::metrics::{Counter, Label};

/// Bumped by every `enable`: handles of an earlier epoch are dropped.
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(0);

type Fixed = [(&'static str, &'static str)];

/// The addresses of a series' name and fixed label values.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key(usize, usize, usize, usize, usize);

/// The handles of one key's series, by their configured label value.
type Valued<H> = Vec<(Box<str>, H)>;

/// Series by their static parts, then by their configured label value.
struct Series<H> {
    by_key: HashMap<Key, Valued<H>, BuildHasherDefault<Mix>>,
}

impl<H> Default for Series<H> {
    fn default() -> Self {
        Self {
            by_key: HashMap::default(),
        }
    }
}

impl<H> Series<H> {
    /// Uses the handle of `key` and `dynamic`, made by `make` the first time.
    fn with(&mut self, key: Key, dynamic: &str, make: impl FnOnce() -> H, use_it: impl FnOnce(&H)) {
        // The configured value is usually the very same `'static` string.
        let same = |v: &str| std::ptr::eq(v, dynamic) || v == dynamic;
        if let Some((_, handle)) = self
            .by_key
            .get(&key)
            .and_then(|values| values.iter().find(|(v, _)| same(v)))
        {
            return use_it(handle);
        }
        let values = self.by_key.entry(key).or_default();
        values.push((dynamic.into(), make()));
        if let Some((_, handle)) = values.last() {
            use_it(handle);
        }
    }
}

#[derive(Default)]
struct Handles {
    epoch: u64,
    /// The series used last, by its key and the address and length of its
    /// configured value (interned: the same address each time): steady traffic
    /// finds it without a lookup.
    last: [Option<(Key, usize, usize, Counter)>; 2],
    counters: Series<Counter>,
}

thread_local! {
    static HANDLES: RefCell<Handles> = RefCell::new(Handles::default());
}

fn key(name: &'static str, fixed: &Fixed) -> Key {
    let at = |i: usize| fixed.get(i).map_or(0, |(_, v)| v.as_ptr() as usize);
    Key(name.as_ptr() as usize, at(0), at(1), at(2), at(3))
}

pub(crate) fn labels(fixed: &Fixed, dynamic: Option<(&'static str, &str)>) -> Vec<Label> {
    let mut labels: Vec<Label> = fixed
        .iter()
        .map(|&(k, v)| Label::from_static_parts(k, v))
        .collect();
    if let Some((k, v)) = dynamic {
        labels.push(Label::new(k, v.to_owned()));
    }
    labels
}

fn with<T>(f: impl FnOnce(&mut Handles) -> T) -> T {
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        let epoch = EPOCH.load(Ordering::Relaxed);
        if handles.epoch != epoch {
            *handles = Handles {
                epoch,
                ..Handles::default()
            };
        }
        f(&mut handles)
    })
}

/// Uses the counter `name` with `fixed` labels (at most four) and `dynamic`; `site`
/// (below 2) names the caller, whose last series is kept apart.
pub(crate) fn counter(
    site: usize,
    name: &'static str,
    fixed: &Fixed,
    dynamic: Option<(&'static str, &str)>,
    use_it: impl FnOnce(&Counter),
) {
    with(|handles| {
        let value = dynamic.map_or("", |(_, v)| v);
        let key = key(name, fixed);
        let address = (value.as_ptr() as usize, value.len());
        if let Some(Some((k, at, len, counter))) = handles.last.get(site)
            && (*k, *at, *len) == (key, address.0, address.1)
        {
            return use_it(counter);
        }
        let make = || ::metrics::counter!(name, labels(fixed, dynamic));
        let mut found = None;
        handles.counters.with(key, value, make, |counter| {
            use_it(counter);
            found = Some(counter.clone());
        });
        if let Some(last) = handles.last.get_mut(site) {
            *last = found.map(|counter| (key, address.0, address.1, counter));
        }
    });
}

/// A multiply-and-rotate hash of the key's words (the keys are addresses, not
/// input: no one chooses them).
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}
