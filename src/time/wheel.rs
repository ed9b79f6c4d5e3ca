//! The hierarchical timing wheel behind every timer of the runtime: `sleep`, `timeout`,
//! `interval` and the per-descriptor read/write deadline timers.
//!
//! # Ground rules
//!
//! The wheel is a plain single-threaded data structure: every method takes `&self` or
//! `&mut self`, and the timer driver keeps it behind its mutex, so there is no lock-free
//! protocol here. It stores an opaque payload `T` per entry and knows nothing about wakers; the
//! driver decides what firing means (and wakes nobody while holding its lock).
//!
//! Entries are created once with [`Wheel::insert`] and then armed, re-armed and disarmed any
//! number of times. Arming, re-arming, disarming and removing are O(1) and never allocate: the
//! deadline timers of a socket are inserted when the socket opens, and changing a deadline is
//! one [`Wheel::arm`]. Only `insert` may grow the slab.
//!
//! # Shape
//!
//! Time is counted in ticks of 1 ms (the resolution of `epoll_wait`'s timeout) since the
//! driver's origin; [`Wheel::elapsed`] is the tick the wheel has been advanced to. There are
//! [`LEVELS`] levels of [`SLOTS`] slots; a slot of level `k` covers `64^k` ticks and the whole of
//! level `k` covers `64^(k+1)`:
//!
//! | level | slot width | level span |
//! |-------|------------|------------|
//! | 0     | 1 ms       | 64 ms      |
//! | 1     | 64 ms      | ~4 s       |
//! | 2     | ~4 s       | ~4.4 min   |
//! | 3     | ~4.4 min   | ~4.7 h     |
//! | 4     | ~4.7 h     | ~12.4 days |
//! | 5     | ~12.4 days | ~2.2 years |
//!
//! A `when` further than [`MAX_DELAY`] ticks after `elapsed()` (about 2.2 years) is **clamped**
//! to `elapsed() + MAX_DELAY` (saturating at `u64::MAX`): such an entry fires early, at the last
//! tick the wheel can represent, and `Wheel::when` (test-only) reports the clamped tick.
//! Callers that want "never" should not arm the entry at all.
//!
//! Entries live in a slab (`Vec` plus a free list threaded through the vacant entries); ids are
//! slab indexes and are reused after [`Wheel::remove`]. Each slot is an intrusive doubly-linked
//! list by `u32` index (the head is in the wheel, `next`/`prev` in the entry), so an entry can be
//! unlinked from wherever it is in O(1). Each level has one `u64` occupancy bitmask, one bit
//! per slot, so finding the earliest non-empty slot costs O([`LEVELS`]).
//!
//! # Where an entry lives
//!
//! * **Pending list** (one extra list): armed entries with `when <= elapsed()`, that is, due
//!   and not yet returned by [`Wheel::poll`]. An entry armed "in the past" goes straight here.
//! * **Wheel slot**: armed entries with `when > elapsed()`. The level is the 6-bit digit in
//!   which `when` and `elapsed()` first differ from the top, and the slot is `when`'s digit at
//!   that level. So the entries of a slot share every bit of `when` from that level up, and
//!   the slot's **start** (`when` with the lower digits cleared) is a tick later than
//!   `elapsed()`. If `when` is in the next turn of the top level (it differs from `elapsed()`
//!   above bit 36), it goes to level 5 anyway: because of the clamp, its level-5 digit is then
//!   at most `elapsed()`'s, and that slot cannot hold entries of the current turn.
//!
//! Invariant: every occupied slot's start is later than `elapsed()`, and
//! `list_for(elapsed(), when)` names the slot holding each entry. [`Wheel::poll`] keeps it by
//! never moving `elapsed()` past the start of an occupied slot: it stops at the start,
//! **cascades** the slot (re-places each entry relative to the new `elapsed()`: the entries
//! whose `when` is the start become pending, the others move to a lower level) and goes on.
//! Each entry cascades at most once per level on its way down (the last time into the pending
//! list), and empty time is skipped with the bitmasks, so `poll` with a `now` years ahead
//! costs O(entries), not O(ticks).
//!
//! Within a level, the starts of occupied slots increase in slot order going round from
//! `elapsed()`'s digit (slots at or below it, only possible at level 5, belong to the next
//! turn). Every slot of level `k` starts before every slot of level `k + 1`, because the
//! entries at level `k` share `elapsed()`'s digits above `k`. So the earliest slot is the first
//! occupied one, in that order, of the lowest non-empty level.
//!
//! # Guarantees
//!
//! * Precision: time never goes backwards, so `poll(now)` works with
//!   `now' = max(now, elapsed())`. An entry is returned only when `when <= now'`; once
//!   `now' >= when`, `poll(now)` returns it before returning `None`. So an entry is never
//!   returned while `now < when`, unless `now` is behind `elapsed()` (the caller's clock went
//!   backwards) and the entry was already due at `elapsed()`.
//! * [`Wheel::next_expiration`] is at or before the earliest `when`. It is exact unless an
//!   entry must still cascade (then it is the start of the slot holding it), or unless
//!   entries are pending (then it is at or before the earliest pending `when`). After
//!   `poll(t)` with `t = next_expiration()` returns `None`, `next_expiration()` is `None` or
//!   later than `t`. So a driver that repeats "`t = next_expiration()`; `poll(t)` until `None`"
//!   receives every entry armed in the future from `poll(when)`, not a tick later.
//! * Order: call an entry's **due tick** its `when`, or `elapsed()` at the time it was armed
//!   if that is later. Entries come out of `poll` in non-decreasing due-tick order, across
//!   calls too; entries with the same due tick come out in unspecified order (entries armed in
//!   the past share the due tick of the moment they were armed, whatever their `when`).

use std::fmt;

/// Bits per level: 64 slots, so that one `u64` holds a level's occupancy bitmask and
/// `trailing_zeros` finds the next occupied slot. Tokio's wheel and Linux's `timer_list` wheel
/// (`LVL_BITS`) use the same width.
const LEVEL_BITS: u32 = 6;

/// Slots per level (`2^LEVEL_BITS`).
const SLOTS: usize = 1 << LEVEL_BITS;

/// Mask of one level's digit.
const SLOT_MASK: u64 = SLOTS as u64 - 1;

/// Number of levels: six levels of 64 slots of 1 ms reach `64^6` ms, about 2.2 years, which is
/// longer than any timeout or deadline a server sets in practice; tokio chose the same.
const LEVELS: usize = 6;

/// Bits of a tick the wheel can tell apart: `LEVEL_BITS * LEVELS` = 36.
const HORIZON_BITS: u32 = LEVEL_BITS * LEVELS as u32;

/// The furthest an entry can be armed ahead of `elapsed()`: `64^6 - 1` ticks, about 795 days.
/// A later `when` is clamped to `elapsed() + MAX_DELAY` (see the module docs).
pub(crate) const MAX_DELAY: u64 = (1 << HORIZON_BITS) - 1;

/// List index of the pending list (due entries); wheel slots are `level * SLOTS + slot`.
const PENDING: usize = LEVELS * SLOTS;

/// Number of lists: every wheel slot plus the pending list.
const LISTS: usize = PENDING + 1;

/// `Entry::list` of an entry on no list: unarmed or vacant. `LISTS` (385) fits in a `u16`.
const UNARMED: u16 = u16::MAX;

/// The null link of the intrusive lists and of the free list. It is never a valid index,
/// because the slab stops growing at `u32::MAX` entries.
const NIL: u32 = u32::MAX;

/// The handle of one wheel entry: its slab index. It stays valid until [`Wheel::remove`] and is
/// then reused by a later [`Wheel::insert`], so the owner must forget it on removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerId(u32);

/// One slab entry: live (with a payload) or vacant (on the free list).
struct Entry<T> {
    /// The tick the entry fires at, already clamped. Meaningful only while armed.
    when: u64,
    /// The next entry of the same list; for a vacant entry, the next vacant entry.
    next: u32,
    /// The previous entry of the same list (`NIL` for the head).
    prev: u32,
    /// Which list holds the entry: a wheel slot (`< PENDING`), `PENDING`, or `UNARMED`.
    list: u16,
    /// `None` exactly while the entry is vacant.
    payload: Option<T>,
}

/// A hierarchical timing wheel of 1 ms ticks holding entries with a payload `T`.
pub(crate) struct Wheel<T> {
    /// The slab.
    entries: Vec<Entry<T>>,
    /// Head of the free list threaded through vacant entries' `next`.
    free: u32,
    /// The head of every list: the wheel slots, then the pending list.
    heads: [u32; LISTS],
    /// Bit `s` of `occupied[k]` is set exactly when slot `s` of level `k` is non-empty.
    occupied: [u64; LEVELS],
    /// The tick the wheel has been advanced to.
    elapsed: u64,
    /// While the pending list is non-empty: at or before the `when` of each of its entries
    /// (it can be stale-low after a disarm, which is harmless for `next_expiration`).
    pending_floor: u64,
    /// Number of armed entries.
    armed: usize,
    /// Number of slots cascaded so far, for the test that `poll` skips empty time.
    #[cfg(test)]
    cascaded: u64,
}

impl<T> Wheel<T> {
    /// An empty wheel at tick 0.
    pub(crate) fn new() -> Self {
        Wheel {
            entries: Vec::new(),
            free: NIL,
            heads: [NIL; LISTS],
            occupied: [0; LEVELS],
            elapsed: 0,
            pending_floor: 0,
            armed: 0,
            #[cfg(test)]
            cascaded: 0,
        }
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// The tick the wheel has been advanced to by [`Wheel::poll`].
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of armed entries, pending ones included.
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    /// Adds an unarmed entry and returns its id. May allocate when the slab grows; the ids of
    /// removed entries are reused first.
    ///
    /// # Panics
    ///
    /// When `u32::MAX - 1` entries are already live.
    pub(crate) fn insert(&mut self, payload: T) -> TimerId {
        if self.free != NIL {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            self.free = entry.next;
            entry.next = NIL;
            entry.prev = NIL;
            entry.list = UNARMED;
            entry.payload = Some(payload);
            return TimerId(index);
        }
        let index = match u32::try_from(self.entries.len()) {
            Ok(index) if index != NIL => index,
            _ => panic!("netpoll: timer wheel full ({NIL} entries)"),
        };
        self.entries.push(Entry {
            when: 0,
            next: NIL,
            prev: NIL,
            list: UNARMED,
            payload: Some(payload),
        });
        TimerId(index)
    }

    /// Disarms the entry if armed, frees it and returns its payload. The id becomes invalid
    /// (and will be handed out again by a later `insert`).
    ///
    /// # Panics
    ///
    /// When `id` was already removed.
    pub(crate) fn remove(&mut self, id: TimerId) -> T {
        self.disarm(id);
        let free = self.free;
        let entry = &mut self.entries[id.0 as usize];
        let payload = entry
            .payload
            .take()
            .expect("netpoll: timer id used after remove");
        entry.next = free;
        self.free = id.0;
        payload
    }

    /// Arms the entry to fire at tick `when`, or moves it there if it is already armed (pending
    /// or not). `when <= elapsed()` makes it due at the next `poll`; a `when` more than
    /// [`MAX_DELAY`] ticks ahead is clamped. O(1), never allocates.
    ///
    /// # Panics
    ///
    /// When `id` was removed.
    pub(crate) fn arm(&mut self, id: TimerId, when: u64) {
        if self.live(id).list == UNARMED {
            self.armed += 1;
        } else {
            self.unlink(id.0);
        }
        self.entries[id.0 as usize].when = when.min(self.elapsed.saturating_add(MAX_DELAY));
        self.place(id.0);
    }

    /// Disarms the entry (also when it is due but not yet returned by `poll`). Returns whether
    /// it was armed. O(1).
    ///
    /// # Panics
    ///
    /// When `id` was removed.
    pub(crate) fn disarm(&mut self, id: TimerId) -> bool {
        if self.live(id).list == UNARMED {
            return false;
        }
        self.unlink(id.0);
        self.entries[id.0 as usize].list = UNARMED;
        self.armed -= 1;
        true
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// Whether the entry is armed (pending entries included).
    ///
    /// # Panics
    ///
    /// When `id` was removed.
    pub(crate) fn is_armed(&self, id: TimerId) -> bool {
        self.live(id).list != UNARMED
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// The tick the entry fires at (after clamping), while it is armed.
    ///
    /// # Panics
    ///
    /// When `id` was removed.
    pub(crate) fn when(&self, id: TimerId) -> Option<u64> {
        let entry = self.live(id);
        (entry.list != UNARMED).then_some(entry.when)
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// The entry's payload.
    ///
    /// # Panics
    ///
    /// When `id` was removed.
    pub(crate) fn get(&self, id: TimerId) -> &T {
        self.entries[id.0 as usize]
            .payload
            .as_ref()
            .expect("netpoll: timer id used after remove")
    }

    /// The entry's payload, mutably.
    ///
    /// # Panics
    ///
    /// When `id` was removed.
    pub(crate) fn get_mut(&mut self, id: TimerId) -> &mut T {
        self.entries[id.0 as usize]
            .payload
            .as_mut()
            .expect("netpoll: timer id used after remove")
    }

    /// A tick at or before the earliest armed entry's `when`, or `None` when nothing is armed.
    ///
    /// It is earlier than that entry's `when` when the entry must first cascade to a lower
    /// level (it is then the start of its slot), or when entries are pending (it is then at or
    /// before `elapsed()`). Either way `poll(next_expiration())` makes progress: it returns an
    /// entry, or it returns `None` and `next_expiration()` moves strictly later. The driver
    /// uses it for the blocking poll's timeout. O([`LEVELS`]).
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        if self.heads[PENDING] != NIL {
            return Some(self.pending_floor);
        }
        self.next_slot().map(|(_, start)| start)
    }

    /// Advances `elapsed()` towards `now` and returns one entry whose `when` is at or before
    /// it, disarmed; `None` once no armed entry is due. Callers loop until `None`.
    ///
    /// Time never goes backwards: a `now` behind `elapsed()` counts as `elapsed()`. Due
    /// entries are returned in non-decreasing due-tick order (see the module docs). Each slot
    /// crossed on the way costs O(its entries); empty time costs nothing.
    pub(crate) fn poll(&mut self, now: u64) -> Option<TimerId> {
        let now = now.max(self.elapsed);
        loop {
            let head = self.heads[PENDING];
            if head != NIL {
                self.unlink(head);
                self.entries[head as usize].list = UNARMED;
                self.armed -= 1;
                return Some(TimerId(head));
            }
            match self.next_slot() {
                Some((list, start)) if start <= now => {
                    self.elapsed = start;
                    self.cascade(list);
                }
                _ => {
                    self.elapsed = now;
                    return None;
                }
            }
        }
    }

    /// The live entry `id`.
    fn live(&self, id: TimerId) -> &Entry<T> {
        let entry = &self.entries[id.0 as usize];
        assert!(
            entry.payload.is_some(),
            "netpoll: timer id used after remove"
        );
        entry
    }

    /// Links an armed entry (`when` set, on no list) into the list its `when` calls for.
    fn place(&mut self, index: u32) {
        let when = self.entries[index as usize].when;
        let list = if when <= self.elapsed {
            if self.heads[PENDING] == NIL || when < self.pending_floor {
                self.pending_floor = when;
            }
            PENDING
        } else {
            list_for(self.elapsed, when)
        };
        self.link(index, list);
    }

    /// Pushes the entry at the front of `list`.
    fn link(&mut self, index: u32, list: usize) {
        let head = self.heads[list];
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        let entry = &mut self.entries[index as usize];
        entry.next = head;
        entry.prev = NIL;
        entry.list = list as u16;
        self.heads[list] = index;
        if list < PENDING {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        }
    }

    /// Takes the entry off its list (which it must be on), keeping the occupancy bit exact.
    /// Leaves `list` stale: the caller relinks the entry or marks it unarmed.
    fn unlink(&mut self, index: u32) {
        let Entry {
            next, prev, list, ..
        } = self.entries[index as usize];
        let list = list as usize;
        debug_assert!(list < LISTS, "unlink of an entry on no list");
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[list] = next;
            if next == NIL && list < PENDING {
                self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
            }
        }
    }

    /// The earliest occupied wheel slot and its start tick.
    fn next_slot(&self) -> Option<(usize, u64)> {
        let level = self.occupied.iter().position(|&mask| mask != 0)?;
        let shift = level as u32 * LEVEL_BITS;
        // Go round from the slot after elapsed()'s digit: that is the order of the slot starts
        // (the slots at or before the digit, only possible at the top level, are next turn's).
        let first = (((self.elapsed >> shift) + 1) & SLOT_MASK) as u32;
        let offset = self.occupied[level].rotate_right(first).trailing_zeros();
        let list = level * SLOTS + ((first + offset) as usize & (SLOTS - 1));
        // All entries of a slot share the bits of `when` from the slot's level up.
        let head = self.heads[list];
        let start = self.entries[head as usize].when & !((1u64 << shift) - 1);
        debug_assert!(start > self.elapsed, "occupied slot starts before elapsed");
        Some((list, start))
    }

    /// Re-places every entry of the slot `list`, whose start `elapsed` has just reached: each
    /// becomes pending or moves to a lower level.
    fn cascade(&mut self, list: usize) {
        #[cfg(test)]
        {
            self.cascaded += 1;
        }
        let mut index = std::mem::replace(&mut self.heads[list], NIL);
        self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.place(index);
            index = next;
        }
    }
}

/// The wheel slot of an entry due at `when`, seen from `elapsed`.
///
/// Requires `elapsed < when <= elapsed + MAX_DELAY`. The level is the digit holding the
/// highest bit in which the two differ, capped at the top level (for a `when` in the top
/// level's next turn); the slot is `when`'s digit at that level.
fn list_for(elapsed: u64, when: u64) -> usize {
    debug_assert!(elapsed < when && when - elapsed <= MAX_DELAY);
    // `| SLOT_MASK` keeps the value non-zero without changing the level.
    let highest = u64::BITS - 1 - ((elapsed ^ when) | SLOT_MASK).leading_zeros();
    let level = (highest / LEVEL_BITS).min(LEVELS as u32 - 1);
    let slot = (when >> (level * LEVEL_BITS)) & SLOT_MASK;
    level as usize * SLOTS + slot as usize
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Wheel::new()
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("elapsed", &self.elapsed)
            .field("armed", &self.armed)
            .field("slab_len", &self.entries.len())
            .field("next_expiration", &self.next_expiration())
            .finish()
    }
}

#[cfg(test)]
impl<T> Wheel<T> {
    /// Capacity of the slab `Vec`, to check that arming never allocates.
    fn slab_capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Walks every list and the free list and checks the structural invariants.
    fn check_invariants(&self) {
        let mut linked = 0;
        for list in 0..LISTS {
            if list < PENDING {
                let bit = self.occupied[list / SLOTS] >> (list % SLOTS) & 1;
                assert_eq!(
                    bit == 1,
                    self.heads[list] != NIL,
                    "occupancy bit of list {list}"
                );
            }
            let mut prev = NIL;
            let mut index = self.heads[list];
            let mut start = None;
            while index != NIL {
                let entry = &self.entries[index as usize];
                assert!(
                    entry.payload.is_some(),
                    "vacant entry {index} on list {list}"
                );
                assert_eq!(entry.list as usize, list, "entry {index} list tag");
                assert_eq!(entry.prev, prev, "entry {index} back link");
                if list == PENDING {
                    assert!(entry.when <= self.elapsed, "pending entry {index} not due");
                    assert!(
                        self.pending_floor <= entry.when,
                        "pending floor above {index}"
                    );
                } else {
                    assert_eq!(
                        list_for(self.elapsed, entry.when),
                        list,
                        "entry {index} slot"
                    );
                    let shift = (list / SLOTS) as u32 * LEVEL_BITS;
                    let this_start = entry.when & !((1u64 << shift) - 1);
                    assert!(this_start > self.elapsed, "slot {list} starts in the past");
                    assert_eq!(*start.get_or_insert(this_start), this_start, "slot {list}");
                }
                linked += 1;
                prev = index;
                index = entry.next;
            }
        }
        assert_eq!(linked, self.armed, "armed count");
        let mut vacant = 0;
        let mut index = self.free;
        while index != NIL {
            let entry = &self.entries[index as usize];
            assert!(
                entry.payload.is_none(),
                "live entry {index} on the free list"
            );
            assert_eq!(entry.list, UNARMED);
            vacant += 1;
            index = entry.next;
        }
        let vacant_total = self.entries.iter().filter(|e| e.payload.is_none()).count();
        assert_eq!(vacant, vacant_total, "free list length");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Marsaglia's xorshift64: deterministic, seedable, no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn new(seed: u64) -> Self {
            XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// In `0..n`, for `n > 0` (the modulo bias is irrelevant here).
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// What the reference model knows about an armed entry.
    #[derive(Clone, Copy, Debug)]
    struct Armed {
        /// The clamped `when` the wheel must report.
        when: u64,
        /// `max(when, elapsed at arm time)`: `poll` returns entries in this order.
        due: u64,
    }

    /// The wheel next to a reference model made of ordered maps.
    struct Model {
        wheel: Wheel<u64>,
        /// Live ids and their payloads.
        live: BTreeMap<TimerId, u64>,
        armed: BTreeMap<TimerId, Armed>,
        /// `(when, id)` of every armed entry, for the earliest `when`.
        by_when: BTreeSet<(u64, u32)>,
        /// The due tick of the last entry `poll` returned.
        last_due: u64,
        next_payload: u64,
    }

    impl PartialOrd for TimerId {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }

    impl Ord for TimerId {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.cmp(&other.0)
        }
    }

    impl Model {
        fn new() -> Self {
            Model {
                wheel: Wheel::new(),
                live: BTreeMap::new(),
                armed: BTreeMap::new(),
                by_when: BTreeSet::new(),
                last_due: 0,
                next_payload: 0,
            }
        }

        fn insert(&mut self) -> TimerId {
            let payload = self.next_payload;
            self.next_payload += 1;
            let id = self.wheel.insert(payload);
            assert!(
                self.live.insert(id, payload).is_none(),
                "{id:?} handed out twice"
            );
            assert!(!self.wheel.is_armed(id));
            assert_eq!(self.wheel.when(id), None);
            id
        }

        /// Drops `id` from the armed part of the model; returns what it knew.
        fn forget(&mut self, id: TimerId) -> Option<Armed> {
            let armed = self.armed.remove(&id)?;
            assert!(self.by_when.remove(&(armed.when, id.0)));
            Some(armed)
        }

        fn arm(&mut self, id: TimerId, when: u64) {
            let elapsed = self.wheel.elapsed();
            self.wheel.arm(id, when);
            self.forget(id);
            let when = when.min(elapsed.saturating_add(MAX_DELAY));
            let due = when.max(elapsed);
            self.armed.insert(id, Armed { when, due });
            self.by_when.insert((when, id.0));
            assert_eq!(self.wheel.when(id), Some(when));
            assert!(self.wheel.is_armed(id));
        }

        fn disarm(&mut self, id: TimerId) {
            let was = self.forget(id).is_some();
            assert_eq!(self.wheel.disarm(id), was);
            assert_eq!(self.wheel.when(id), None);
        }

        fn remove(&mut self, id: TimerId) {
            self.forget(id);
            let payload = self.live.remove(&id).unwrap();
            assert_eq!(self.wheel.remove(id), payload);
        }

        /// One `poll(now)`, checked against the model: the precision contract, the order
        /// guarantee and how far `elapsed()` moves.
        fn poll_once(&mut self, now: u64) -> Option<(TimerId, Armed)> {
            let before = self.wheel.elapsed();
            let effective = now.max(before);
            let got = self.wheel.poll(now);
            let after = self.wheel.elapsed();
            assert!(
                before <= after && after <= effective,
                "elapsed left its range"
            );
            let Some(id) = got else {
                assert_eq!(after, effective, "poll returned None short of now");
                if let Some(&(when, id)) = self.by_when.first() {
                    assert!(
                        when > effective,
                        "poll({now}) returned None while entry {id} due at {when} is armed"
                    );
                }
                return None;
            };
            let armed = self.forget(id).expect("poll returned an unarmed entry");
            assert!(
                armed.when <= effective,
                "{id:?} due at {} returned by poll({now}) at elapsed {before}",
                armed.when
            );
            assert!(
                armed.due >= self.last_due,
                "{id:?} due at {} returned after one due at {}",
                armed.due,
                self.last_due
            );
            self.last_due = armed.due;
            assert!(!self.wheel.is_armed(id));
            assert_eq!(self.wheel.when(id), None);
            assert_eq!(*self.wheel.get(id), self.live[&id]);
            Some((id, armed))
        }

        fn drain(&mut self, now: u64) {
            while self.poll_once(now).is_some() {}
        }

        /// The driver's loop, one round: `t = next_expiration()`, then `poll(t)` until `None`.
        /// Entries that were not yet due must come out at exactly their `when`, and the round
        /// must move `next_expiration()` past `t`.
        fn driver_round(&mut self) {
            let Some(t) = self.wheel.next_expiration() else {
                return;
            };
            let before = self.wheel.elapsed();
            while let Some((id, armed)) = self.poll_once(t) {
                if armed.due > before {
                    assert_eq!(
                        armed.when, t,
                        "{id:?} returned by poll({t}), not at its when"
                    );
                }
            }
            if let Some(next) = self.wheel.next_expiration() {
                assert!(
                    next > t,
                    "poll({t}) made no progress: next_expiration {next}"
                );
            }
        }

        /// `next_expiration` is `None` exactly when nothing is armed, and otherwise at or
        /// before the earliest `when`.
        fn check_next_expiration(&self) {
            match (self.wheel.next_expiration(), self.by_when.first()) {
                (None, None) => {}
                (Some(t), Some(&(when, id))) => {
                    assert!(
                        t <= when,
                        "next_expiration {t} after entry {id} due at {when}"
                    )
                }
                (got, first) => panic!("next_expiration {got:?}, earliest armed {first:?}"),
            }
            assert_eq!(self.wheel.armed(), self.armed.len());
        }

        fn pick<V>(map: &BTreeMap<TimerId, V>, rng: &mut XorShift) -> Option<TimerId> {
            if map.is_empty() {
                return None;
            }
            map.keys()
                .nth(rng.below(map.len() as u64) as usize)
                .copied()
        }

        /// A random `when`: near, far, past the horizon, in the past, or `u64::MAX`.
        fn random_when(&self, rng: &mut XorShift) -> u64 {
            let e = self.wheel.elapsed();
            match rng.below(20) {
                0..=5 => e.saturating_add(rng.below(64)),
                6..=9 => e.saturating_add(rng.below(1 << 13)),
                10..=11 => e.saturating_add(rng.below(1 << 24)),
                12..=13 => e.saturating_add(rng.below(1 << 37)),
                14 => e.saturating_add(MAX_DELAY - 2 + rng.below(5)),
                15..=17 => e.saturating_sub(rng.below(300)),
                18 => match self.by_when.first() {
                    // Same tick as, or next to, an armed entry.
                    Some(&(when, _)) => when.saturating_add(rng.below(3)).saturating_sub(1),
                    None => e,
                },
                _ => u64::MAX,
            }
        }

        /// A random `now` for `poll`: mostly small steps, some jumps, some backwards.
        fn random_now(&self, rng: &mut XorShift) -> u64 {
            let e = self.wheel.elapsed();
            match rng.below(40) {
                0..=5 => e,
                6..=13 => e.saturating_add(rng.below(4)),
                14..=21 => e.saturating_add(rng.below(128)),
                22..=27 => e.saturating_add(rng.below(1 << 14)),
                28..=30 => e.saturating_add(rng.below(1 << 26)),
                31 => e.saturating_add(rng.below(1 << 37)),
                32..=33 => e.saturating_sub(rng.below(64)),
                _ => match self.by_when.first() {
                    Some(&(when, _)) => when.saturating_sub(rng.below(2)),
                    None => e,
                },
            }
        }
    }

    /// Runs `ops` random operations on a wheel first advanced to `start`.
    fn run_model(seed: u64, start: u64, ops: usize) {
        let mut rng = XorShift::new(seed);
        let mut m = Model::new();
        m.drain(start);
        for _ in 0..64 {
            m.insert();
        }
        for _ in 0..ops {
            match rng.below(100) {
                0..=9 if m.live.len() < 300 => {
                    m.insert();
                }
                0..=9 => {
                    let id = Model::pick(&m.live, &mut rng).unwrap();
                    m.remove(id);
                }
                10..=34 => {
                    if let Some(id) = Model::pick(&m.live, &mut rng) {
                        let when = m.random_when(&mut rng);
                        m.arm(id, when);
                    }
                }
                35..=44 => {
                    // Re-arm an armed entry (possibly one that is due but not returned yet).
                    if let Some(id) = Model::pick(&m.armed, &mut rng) {
                        let when = m.random_when(&mut rng);
                        m.arm(id, when);
                    }
                }
                45..=52 => {
                    let id = if rng.below(2) == 0 {
                        Model::pick(&m.armed, &mut rng)
                    } else {
                        Model::pick(&m.live, &mut rng)
                    };
                    if let Some(id) = id {
                        m.disarm(id);
                    }
                }
                53..=57 => {
                    if let Some(id) = Model::pick(&m.live, &mut rng) {
                        m.remove(id);
                    }
                }
                58..=59 => {
                    if let Some(id) = Model::pick(&m.live, &mut rng) {
                        *m.wheel.get_mut(id) += 1_000_000;
                        *m.live.get_mut(&id).unwrap() += 1_000_000;
                        assert_eq!(*m.wheel.get(id), m.live[&id]);
                    }
                }
                60..=79 => {
                    let now = m.random_now(&mut rng);
                    m.poll_once(now);
                }
                80..=87 => {
                    let now = m.random_now(&mut rng);
                    m.drain(now);
                }
                _ => m.driver_round(),
            }
            m.check_next_expiration();
            m.wheel.check_invariants();
        }
        // Everything still armed fires, each entry once, by the end of time.
        let remaining = m.armed.len();
        let mut fired = 0;
        while m.poll_once(u64::MAX).is_some() {
            fired += 1;
        }
        assert_eq!(fired, remaining);
        assert_eq!(m.wheel.armed(), 0);
        m.wheel.check_invariants();
    }

    #[test]
    fn random_operations_match_the_reference_model() {
        for seed in 1..=6 {
            run_model(seed, 0, 6_000);
        }
    }

    #[test]
    fn random_operations_match_the_reference_model_across_a_top_level_turn() {
        // Start just before elapsed() crosses a multiple of 64^6, where level 5 wraps.
        for seed in 11..=13 {
            run_model(seed, (1 << 36) - 5_000, 6_000);
        }
    }

    #[test]
    fn random_operations_match_the_reference_model_near_the_end_of_time() {
        // Clamping saturates at u64::MAX; nothing may overflow.
        for seed in 21..=23 {
            run_model(seed, u64::MAX - (1 << 38), 6_000);
        }
    }

    #[test]
    fn fifty_thousand_entries_fire_once_each_at_their_tick() {
        let mut rng = XorShift::new(7);
        let mut wheel = Wheel::new();
        let mut whens = Vec::new();
        for i in 0..50_000u64 {
            let id = wheel.insert(i);
            let when = match i % 4 {
                0 => rng.below(1 << 10),
                1 => rng.below(1 << 20),
                2 => rng.below(1 << 30),
                _ => rng.below(MAX_DELAY + 1),
            };
            wheel.arm(id, when);
            whens.push(when);
        }
        assert_eq!(wheel.armed(), 50_000);
        let mut fired = vec![false; whens.len()];
        let mut last = 0;
        while let Some(t) = wheel.next_expiration() {
            while let Some(id) = wheel.poll(t) {
                let i = *wheel.get(id) as usize;
                assert_eq!(whens[i], t, "entry {i} fired at the wrong tick");
                assert!(!fired[i], "entry {i} fired twice");
                assert!(t >= last, "entry {i} fired out of order");
                fired[i] = true;
                last = t;
            }
        }
        assert!(fired.iter().all(|&f| f));
        assert_eq!(wheel.armed(), 0);
        wheel.check_invariants();
    }

    #[test]
    fn removed_ids_are_reused() {
        let mut wheel = Wheel::new();
        let a = wheel.insert("a");
        let b = wheel.insert("b");
        wheel.arm(a, 10);
        assert_eq!(wheel.remove(a), "a");
        assert_eq!(wheel.armed(), 0);
        let c = wheel.insert("c");
        assert_eq!(c, a);
        assert!(!wheel.is_armed(c), "a reused id starts unarmed");
        assert_eq!(*wheel.get(c), "c");
        assert_eq!(*wheel.get(b), "b");
        assert_eq!(wheel.poll(100), None, "the removed entry's arming is gone");
        wheel.check_invariants();
    }

    #[test]
    #[should_panic(expected = "timer id used after remove")]
    fn arming_a_removed_id_panics() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(());
        wheel.insert(());
        wheel.remove(a);
        wheel.arm(a, 5);
    }

    #[test]
    fn arming_rearming_and_disarming_never_allocate() {
        let mut rng = XorShift::new(3);
        let mut wheel = Wheel::new();
        let ids: Vec<_> = (0..1_000).map(|i| wheel.insert(i)).collect();
        let capacity = wheel.slab_capacity();
        let heads = wheel.heads.as_ptr();
        for round in 0..20 {
            for &id in &ids {
                let when = wheel.elapsed() + rng.below(1 << (2 * round % 40));
                wheel.arm(id, when);
                if rng.below(4) == 0 {
                    wheel.disarm(id);
                }
            }
            let now = wheel.elapsed() + rng.below(1 << 12);
            while wheel.poll(now).is_some() {}
            // Remove and re-insert: the freed slab entries are reused, not grown.
            let reused = wheel.remove(ids[round]);
            assert_eq!(wheel.insert(reused), ids[round]);
        }
        assert_eq!(wheel.slab_capacity(), capacity, "the slab grew");
        assert_eq!(wheel.heads.as_ptr(), heads);
        wheel.check_invariants();
    }

    #[test]
    fn huge_when_is_clamped_to_the_horizon_without_overflow() {
        let mut wheel = Wheel::new();
        let id = wheel.insert(());
        wheel.arm(id, u64::MAX);
        assert_eq!(wheel.when(id), Some(MAX_DELAY));
        assert_eq!(wheel.poll(MAX_DELAY - 1), None);
        assert!(wheel.next_expiration().unwrap() <= MAX_DELAY);
        assert_eq!(wheel.poll(MAX_DELAY), Some(id));

        // From further on, the horizon moves with elapsed().
        wheel.arm(id, u64::MAX);
        assert_eq!(wheel.when(id), Some(2 * MAX_DELAY));
        assert_eq!(wheel.poll(2 * MAX_DELAY), Some(id));

        // Near the end of time the clamp saturates at u64::MAX.
        assert_eq!(wheel.poll(u64::MAX - 10), None);
        wheel.arm(id, u64::MAX);
        assert_eq!(wheel.when(id), Some(u64::MAX));
        assert_eq!(wheel.poll(u64::MAX - 1), None);
        assert_eq!(wheel.next_expiration(), Some(u64::MAX));
        assert_eq!(wheel.poll(u64::MAX), Some(id));
        assert_eq!(wheel.elapsed(), u64::MAX);

        // At the end of time everything is due at once.
        wheel.arm(id, u64::MAX);
        assert_eq!(wheel.poll(0), Some(id));
        assert_eq!(wheel.poll(u64::MAX), None);
        wheel.check_invariants();
    }

    #[test]
    fn polling_years_ahead_skips_empty_time() {
        let mut wheel = Wheel::new();
        // An empty wheel jumps straight to `now`.
        assert_eq!(wheel.poll(u64::MAX / 2), None);
        assert_eq!(wheel.elapsed(), u64::MAX / 2);
        assert_eq!(wheel.cascaded, 0);

        let start = wheel.elapsed();
        let deltas = [1, 63, 64, 4_095, 4_096, 1 << 20, 1 << 30, MAX_DELAY];
        for (i, delta) in deltas.into_iter().enumerate() {
            let id = wheel.insert(i);
            wheel.arm(id, start + delta);
        }
        let mut fired = 0;
        while wheel.poll(u64::MAX).is_some() {
            fired += 1;
        }
        assert_eq!(fired, deltas.len());
        // Each entry cascades at most once per level: the work does not depend on the ticks.
        assert!(
            wheel.cascaded <= (deltas.len() * LEVELS) as u64,
            "{} slots cascaded for {} entries",
            wheel.cascaded,
            deltas.len()
        );
        assert_eq!(wheel.elapsed(), u64::MAX);
    }

    #[test]
    fn next_expiration_leads_to_each_entry_through_its_cascade_points() {
        let mut wheel = Wheel::new();
        let id = wheel.insert(());
        // 1000 = 15 * 64 + 40: level 1, slot 15, which starts at 960.
        wheel.arm(id, 1_000);
        assert_eq!(wheel.next_expiration(), Some(960));
        assert_eq!(wheel.poll(959), None);
        assert_eq!(
            wheel.poll(960),
            None,
            "a cascade point is not the entry's tick"
        );
        assert_eq!(wheel.next_expiration(), Some(1_000));
        assert_eq!(wheel.poll(999), None);
        assert_eq!(wheel.poll(1_000), Some(id));
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn entry_due_at_a_slot_start_fires_at_that_start() {
        let mut wheel = Wheel::new();
        let ids: Vec<_> = [64, 4_096, 1 << 18, 1 << 24, 1 << 30]
            .into_iter()
            .map(|when| {
                let id = wheel.insert(when);
                wheel.arm(id, when);
                id
            })
            .collect();
        for &id in &ids {
            let when = *wheel.get(id);
            assert_eq!(wheel.next_expiration(), Some(when));
            assert_eq!(wheel.poll(when - 1), None);
            assert_eq!(wheel.poll(when), Some(id));
        }
    }

    #[test]
    fn entry_armed_in_the_past_is_due_at_the_next_poll() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.poll(1_000), None);
        let id = wheel.insert(());
        wheel.arm(id, 400);
        assert_eq!(wheel.when(id), Some(400));
        assert_eq!(wheel.next_expiration(), Some(400));
        // A `now` behind elapsed() counts as elapsed(): time does not go backwards.
        assert_eq!(wheel.poll(10), Some(id));
        assert_eq!(wheel.elapsed(), 1_000);
        wheel.arm(id, 1_000);
        assert_eq!(wheel.poll(1_000), Some(id));
        assert_eq!(wheel.poll(1_000), None);
    }

    #[test]
    fn due_entries_disarmed_or_moved_before_being_returned_are_not_returned() {
        let mut wheel = Wheel::new();
        let a = wheel.insert('a');
        let b = wheel.insert('b');
        let c = wheel.insert('c');
        for id in [a, b, c] {
            wheel.arm(id, 50);
        }
        let first = wheel.poll(50).unwrap();
        let rest: Vec<_> = [a, b, c].into_iter().filter(|&id| id != first).collect();
        // Both others are due now; one is disarmed, one moved later.
        assert!(wheel.disarm(rest[0]));
        assert!(!wheel.disarm(rest[0]));
        wheel.arm(rest[1], 80);
        assert_eq!(wheel.poll(79), None);
        assert_eq!(wheel.poll(80), Some(rest[1]));
        assert_eq!(wheel.poll(u64::MAX), None);
        assert_eq!(wheel.armed(), 0);
    }

    #[test]
    fn entries_come_out_in_tick_order_within_one_poll() {
        let mut rng = XorShift::new(5);
        let mut wheel = Wheel::new();
        for _ in 0..2_000 {
            let when = rng.below(1 << 22);
            let id = wheel.insert(when);
            wheel.arm(id, when);
        }
        let mut last = 0;
        while let Some(id) = wheel.poll(1 << 22) {
            let when = *wheel.get(id);
            assert!(when >= last, "{when} returned after {last}");
            last = when;
        }
        assert_eq!(wheel.armed(), 0);
    }
}
