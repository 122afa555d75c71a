//! What is remembered of one user: hashed user_data keys and the browser keys, each with the
//! time it was last seen, and an optional link to the known user an anonymous id belongs to.
//!
//! Only what the mapping already normalized and hashed (SPEC §4) is kept, plus `fbp`, `fbc`,
//! `client_ip_address` and `client_user_agent`, which Meta takes unhashed. Raw traits never
//! reach a profile.
//!
//! Every key keeps its latest value, except that `fbc` and `fbp` keep their *first* creation
//! time: Meta's `fb.{subdomain_index}.{creation_time}.{id}` dates the ad click (or the cookie),
//! and a later page view of the same click, rebuilt from its `fbclid`, would otherwise move the
//! click forward (see [`first_of`]).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sinks::facebook_pixel::capi::{Hashes, UserData, UserDataKeys};
use crate::sinks::facebook_pixel::normalize::Sha256Hex;

/// A user's key in the store: SHA-256 of `user:ID` or `anon:ID` (and an order's, of
/// `order:ID`: [`super::order`]), so the store holds no raw identifier either.
pub type Key = [u8; 32];

/// The store key of a `userId`.
pub fn user_key(id: &str) -> Key {
    hashed_key("user:", id)
}

/// The store key of an `anonymousId`.
pub fn anonymous_key(id: &str) -> Key {
    hashed_key("anon:", id)
}

/// SHA-256 of `prefix` then `id`: the prefix keeps a user, an anonymous id and an order that
/// happen to share an id apart.
pub(super) fn hashed_key(prefix: &str, id: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(prefix.as_bytes());
    hasher.update(id.as_bytes());
    hasher.finalize().into()
}

/// The hashed keys remembered, as bits 0‥9 of [`UserDataKeys`]: em ph fn ln ge db ct st zp
/// country. (`external_id` is not: every event that has an id derives its own.)
const HASHED: usize = 10;
/// The plain keys remembered, as bits 11‥14: client_ip_address client_user_agent fbc fbp.
const PLAIN: usize = 4;
const FIRST_PLAIN_BIT: usize = 11;
/// The plain slots of `fbc` and `fbp`, which keep their first creation time.
const FBC: usize = 2;
const FBP: usize = 3;

/// The keys at bit `i`. The literal takes whatever width [`UserDataKeys`] has, so this file
/// does not depend on it.
fn key_at(i: usize) -> UserDataKeys {
    UserDataKeys::from_bits(1 << i)
}

/// One remembered value and when it was last seen (Unix seconds).
#[derive(Clone, Debug, PartialEq)]
struct Seen<T> {
    value: T,
    at: i64,
}

/// What is remembered of one user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    hashed: [Option<Seen<Hashes>>; HASHED],
    plain: [Option<Seen<Arc<str>>>; PLAIN],
    /// For an anonymous id: the known user it was seen with (or aliased to).
    link: Option<Seen<Key>>,
}

fn hashed_mut<'u>(user: &'u mut UserData<'_>, i: usize) -> &'u mut Hashes {
    match i {
        0 => &mut user.em,
        1 => &mut user.ph,
        2 => &mut user.first_name,
        3 => &mut user.last_name,
        4 => &mut user.ge,
        5 => &mut user.db,
        6 => &mut user.ct,
        7 => &mut user.st,
        8 => &mut user.zp,
        _ => &mut user.country,
    }
}

fn hashed<'u>(user: &'u UserData<'_>, i: usize) -> &'u Hashes {
    match i {
        0 => &user.em,
        1 => &user.ph,
        2 => &user.first_name,
        3 => &user.last_name,
        4 => &user.ge,
        5 => &user.db,
        6 => &user.ct,
        7 => &user.st,
        8 => &user.zp,
        _ => &user.country,
    }
}

fn plain<'u>(user: &'u UserData<'_>, i: usize) -> Option<&'u str> {
    match i {
        0 => user.client_ip_address,
        1 => user.client_user_agent,
        2 => user.fbc.as_deref(),
        _ => user.fbp,
    }
}

fn set_plain<'m>(user: &mut UserData<'m>, i: usize, value: &'m str) {
    match i {
        0 => user.client_ip_address = Some(value),
        1 => user.client_user_agent = Some(value),
        2 => user.fbc = Some(Cow::Borrowed(value)),
        _ => user.fbp = Some(value),
    }
}

/// An `fbc` or `fbp` as Meta defines it, `fb.{subdomain_index}.{creation_time}.{id}`: its
/// creation time (Unix ms) and its id (everything after the third field: the click's `fbclid`,
/// the cookie's random number). `None` for anything else.
fn browser_id(value: &str) -> Option<(u64, &str)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (index, rest) = value.strip_prefix("fb.")?.split_once('.')?;
    let (time, id) = rest.split_once('.')?;
    if !digits(index) || !digits(time) || id.is_empty() {
        return None;
    }
    Some((time.parse().ok()?, id))
}

/// Whether `remembered` stands for `seen` in the `fbc` or `fbp` slot: the same click (or
/// cookie), created no later. Meta asks for the time the id was *first* observed, so a later
/// sighting of it keeps the remembered time, and an earlier one (an event delivered late, a
/// replay, another instance) takes its place; a new id is a new click and replaces it. Values
/// not in Meta's format are compared whole, as every other key is.
fn first_of(remembered: &str, seen: &str) -> bool {
    match (browser_id(remembered), browser_id(seen)) {
        (Some((first, id)), Some((then, seen_id))) => id == seen_id && first <= then,
        _ => remembered == seen,
    }
}

/// Whether `a` and `b` are the same click (or cookie) in Meta's format, whatever their times.
fn same_id(a: &str, b: &str) -> bool {
    matches!((browser_id(a), browser_id(b)), (Some((_, a)), Some((_, b))) if a == b)
}

/// Whether `slot` keeps its first creation time rather than its latest value.
fn keeps_first(slot: usize) -> bool {
    slot == FBC || slot == FBP
}

/// Whether a value seen at `at` is still usable at `now`. Saturating: times come from stored
/// profiles, which another instance (or an old version) may have written.
fn fresh(at: i64, now: i64, ttl: i64) -> bool {
    now.saturating_sub(at) < ttl
}

/// Whether a remembered value needs writing: it changed, or it was last written long enough
/// ago that its age would otherwise be misjudged.
fn update<T>(
    slot: &mut Option<Seen<T>>,
    same: impl FnOnce(&T) -> bool,
    value: impl FnOnce() -> T,
    now: i64,
    refresh: i64,
) -> bool {
    match slot {
        Some(seen) if same(&seen.value) => {
            if now.saturating_sub(seen.at) >= refresh {
                seen.at = now;
                true
            } else {
                false
            }
        }
        _ => {
            *slot = Some(Seen {
                value: value(),
                at: now,
            });
            true
        }
    }
}

impl Profile {
    /// Remember the keys `user` carries (the latest values win, but for the first creation time
    /// of an `fbc` or `fbp`, see [`first_of`]). Returns whether anything changed enough to be
    /// written to a persistent store: a new value, or a value whose last write is at least
    /// `refresh` seconds old.
    pub fn learn(&mut self, user: &UserData<'_>, now: i64, refresh: i64) -> bool {
        let mut changed = false;
        // Compared before anything is copied: most events repeat what is remembered.
        for i in 0..HASHED {
            let values = hashed(user, i);
            if !values.is_empty() {
                changed |= update(
                    &mut self.hashed[i],
                    |v| v == values,
                    || values.clone(),
                    now,
                    refresh,
                );
            }
        }
        for i in 0..PLAIN {
            if let Some(value) = plain(user, i) {
                // A remembered click seen again counts as seen: it stays, and its time of last
                // sight moves on as any repeated value's does.
                let same = |v: &Arc<str>| {
                    if keeps_first(i) {
                        first_of(v, value)
                    } else {
                        &**v == value
                    }
                };
                changed |= update(&mut self.plain[i], same, || Arc::from(value), now, refresh);
            }
        }
        changed
    }

    /// Link this (anonymous) profile to the known user `to`. When it was linked to someone
    /// else (a shared device, a new login), what it remembered belongs to that other person
    /// and is forgotten, so it can never reach this user's events.
    pub fn link(&mut self, to: Key, now: i64, refresh: i64) -> bool {
        if self.link.as_ref().is_some_and(|l| l.value != to) {
            self.hashed = Default::default();
            self.plain = Default::default();
        }
        update(&mut self.link, |l| *l == to, || to, now, refresh)
    }

    /// The user this profile is linked to, however long ago.
    pub fn link_target(&self) -> Option<&Key> {
        self.link.as_ref().map(|l| &l.value)
    }

    /// The known user this profile is linked to, if the link is younger than `ttl`.
    pub fn linked(&self, now: i64, ttl: i64) -> Option<&Key> {
        self.link
            .as_ref()
            .filter(|l| fresh(l.at, now, ttl))
            .map(|l| &l.value)
    }

    /// Add to `user` every key it lacks that this profile remembers from less than `ttl`
    /// seconds ago, and put the remembered `fbc` or `fbp` in place of a later sighting of the
    /// same id (see [`first_of`]). Returns the keys it set: a replaced `fbc` or `fbp` is among
    /// them, since what is sent came from memory.
    pub fn fill<'m>(&'m self, user: &mut UserData<'m>, now: i64, ttl: i64) -> UserDataKeys {
        let mut added = UserDataKeys::default();
        for (i, slot) in self.hashed.iter().enumerate() {
            if let Some(seen) = slot.as_ref().filter(|s| fresh(s.at, now, ttl)) {
                let out = hashed_mut(user, i);
                if out.is_empty() {
                    out.clone_from(&seen.value);
                    added = added | key_at(i);
                }
            }
        }
        for (i, slot) in self.plain.iter().enumerate() {
            let Some(seen) = slot.as_ref().filter(|s| fresh(s.at, now, ttl)) else {
                continue;
            };
            let fill = match plain(user, i) {
                None => true,
                Some(own) => keeps_first(i) && *own != *seen.value && first_of(&seen.value, own),
            };
            if fill {
                set_plain(user, i, &seen.value);
                added = added | key_at(FIRST_PLAIN_BIT + i);
            }
        }
        added
    }

    /// The newest time anything in it was seen.
    pub fn last_seen(&self) -> i64 {
        let hashed = self.hashed.iter().flatten().map(|s| s.at);
        let plain = self.plain.iter().flatten().map(|s| s.at);
        let link = self.link.iter().map(|s| s.at);
        hashed.chain(plain).chain(link).max().unwrap_or(i64::MIN)
    }

    /// Whether everything in it is older than `ttl` (an empty profile is).
    pub fn is_expired(&self, now: i64, ttl: i64) -> bool {
        !fresh(self.last_seen(), now, ttl)
    }

    /// Merge a copy written elsewhere (another instance): per key, the newer value wins, but
    /// for `fbc` and `fbp` the first creation time of the same id is kept (the newer time of
    /// last sight too), so that two instances that each saw one page view of a click agree on
    /// the first, whichever wrote last.
    pub fn merge(&mut self, other: Profile) {
        fn newer<T>(mine: &mut Option<Seen<T>>, theirs: Option<Seen<T>>) {
            if let Some(theirs) = theirs
                && mine.as_ref().is_none_or(|m| theirs.at > m.at)
            {
                *mine = Some(theirs);
            }
        }
        for (mine, theirs) in self.hashed.iter_mut().zip(other.hashed) {
            newer(mine, theirs);
        }
        for (i, (mine, theirs)) in self.plain.iter_mut().zip(other.plain).enumerate() {
            let Some(theirs) = theirs else {
                continue;
            };
            if let Some(m) = mine
                .as_mut()
                .filter(|m| keeps_first(i) && same_id(&m.value, &theirs.value))
            {
                if !first_of(&m.value, &theirs.value) {
                    m.value = theirs.value;
                }
                m.at = m.at.max(theirs.at);
            } else {
                newer(mine, Some(theirs));
            }
        }
        newer(&mut self.link, other.link);
    }

    /// The profile as stored: compact JSON of hashes, browser keys and times.
    pub fn encode(&self) -> Vec<u8> {
        let mut stored = Stored::default();
        for (i, slot) in self.hashed.iter().enumerate() {
            if let Some(seen) = slot {
                let values = seen.value.iter().map(|h| h.as_str().to_owned()).collect();
                stored
                    .keys
                    .push((UserDataKeys::NAMES[i].to_owned(), values, seen.at));
            }
        }
        for (i, slot) in self.plain.iter().enumerate() {
            if let Some(seen) = slot {
                let name = UserDataKeys::NAMES[FIRST_PLAIN_BIT + i].to_owned();
                stored
                    .keys
                    .push((name, vec![seen.value.to_string()], seen.at));
            }
        }
        stored.link = self.link.as_ref().map(|l| (hex::encode(l.value), l.at));
        serde_json::to_vec(&stored).expect("a profile serializes")
    }

    /// A stored profile; `None` when it cannot be read (it is then dropped, not guessed at).
    pub fn decode(bytes: &[u8]) -> Option<Profile> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        let mut profile = Profile::default();
        for (name, values, at) in stored.keys {
            let bit = UserDataKeys::NAMES.iter().position(|n| *n == name)?;
            if bit < HASHED {
                let hashes = values
                    .iter()
                    .map(|v| Sha256Hex::parse(v))
                    .collect::<Option<Hashes>>()?;
                profile.hashed[bit] = Some(Seen { value: hashes, at });
            } else if let Some(slot) = bit
                .checked_sub(FIRST_PLAIN_BIT)
                .and_then(|i| profile.plain.get_mut(i))
            {
                // `get_mut`: a key listed after `fbp` in `UserDataKeys::NAMES` (one a newer
                // version may remember, in a shared bucket) is skipped like `external_id`,
                // instead of indexing past the slots.
                let value = values.into_iter().next()?;
                *slot = Some(Seen {
                    value: Arc::from(value),
                    at,
                });
            }
        }
        if let Some((key, at)) = stored.link {
            let value: Key = hex::decode(key).ok()?.try_into().ok()?;
            profile.link = Some(Seen { value, at });
        }
        Some(profile)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    /// (user_data key, values, last seen).
    #[serde(default, rename = "k")]
    keys: Vec<(String, Vec<String>, i64)>,
    /// (hex store key of the linked user, when linked).
    #[serde(default, rename = "l", skip_serializing_if = "Option::is_none")]
    link: Option<(String, i64)>,
}
