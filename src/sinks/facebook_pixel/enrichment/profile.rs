//! What is remembered of one user: hashed user_data keys and the browser keys, each with the
//! time it was last seen, and an optional link to the known user an anonymous id belongs to.
//!
//! Only what the mapping already normalized and hashed (SPEC §4) is kept, plus `fbp`, `fbc`,
//! `client_ip_address` and `client_user_agent`, which Meta takes unhashed. Raw traits never
//! reach a profile.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sinks::facebook_pixel::capi::{Hashes, UserData, UserDataKeys};
use crate::sinks::facebook_pixel::normalize::Sha256Hex;

/// A user's key in the store: SHA-256 of `user:ID` or `anon:ID`, so the store holds no raw
/// identifier either.
pub type Key = [u8; 32];

/// The store key of a `userId`.
pub fn user_key(id: &str) -> Key {
    key("user:", id)
}

/// The store key of an `anonymousId`.
pub fn anonymous_key(id: &str) -> Key {
    key("anon:", id)
}

fn key(prefix: &str, id: &str) -> Key {
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
    /// Remember the keys `user` carries (the latest values win). Returns whether anything
    /// changed enough to be written to a persistent store: a new value, or a value whose last
    /// write is at least `refresh` seconds old.
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
                changed |= update(
                    &mut self.plain[i],
                    |v| &**v == value,
                    || Arc::from(value),
                    now,
                    refresh,
                );
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
    /// seconds ago. Returns the keys added.
    pub fn fill<'m>(&'m self, user: &mut UserData<'m>, now: i64, ttl: i64) -> UserDataKeys {
        let mut added = 0u16;
        for (i, slot) in self.hashed.iter().enumerate() {
            if let Some(seen) = slot.as_ref().filter(|s| fresh(s.at, now, ttl)) {
                let out = hashed_mut(user, i);
                if out.is_empty() {
                    out.clone_from(&seen.value);
                    added |= 1 << i;
                }
            }
        }
        for (i, slot) in self.plain.iter().enumerate() {
            if let Some(seen) = slot.as_ref().filter(|s| fresh(s.at, now, ttl))
                && plain(user, i).is_none()
            {
                set_plain(user, i, &seen.value);
                added |= 1 << (FIRST_PLAIN_BIT + i);
            }
        }
        UserDataKeys::from_bits(added)
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

    /// Merge a copy written elsewhere (another instance): per key, the newer value wins.
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
        for (mine, theirs) in self.plain.iter_mut().zip(other.plain) {
            newer(mine, theirs);
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
            } else if bit >= FIRST_PLAIN_BIT {
                let value = values.into_iter().next()?;
                profile.plain[bit - FIRST_PLAIN_BIT] = Some(Seen {
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
