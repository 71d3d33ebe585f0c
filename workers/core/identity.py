"""Identity stitching: which profile does an event's set of identifiers belong to?

A profile is a group of identifiers. An event that names identifiers of several
profiles merges them, unless the merged group would hold more identifiers of a
type than its limit allows (two ``user_id``s are two people): then nothing is
merged, the event goes to the profile of its strongest identifier and the
refusal is reported. A profile's id is derived from its strongest identifier
(type priority, then value), so the final ids depend only on the final groups,
never on the order events arrived in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ProfileId = str
# a profile's identifiers, flat: (type, value, type, value, ...)
Members = tuple[str, ...]
#: a profile's changelog value: [its identifiers by type, [rank, value] of its strongest];
#: lists, which msgpack packs as they are (a tuple is an extension value of its own: a
#: record made and packed in 5.8 µs instead of 2.7, ``bench.py codec``); records of earlier
#: versions, tuples, read alike
IdentityRecord = list[Any]


@dataclass(frozen=True)
class IdentityRules:
    """Priorities (order of ``limits``), per-profile limits and the junk blocklist."""

    limits: Mapping[str, int]
    blocklist_values: frozenset[str] = frozenset()
    blocklist_patterns: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, limits: Mapping[str, int], values: Iterable[str],
                    patterns: Iterable[str]) -> IdentityRules:
        return cls(dict(limits), frozenset(v.lower() for v in values), tuple(patterns))


class Resolution:
    """Where an event goes, and what its identifiers changed on the way. One is made per
    event: a small class (C fields where compiled), as a dataclass's constructor is
    Python code."""

    __slots__ = ("blocked", "dropped", "linked", "merged", "profile_id", "refused")

    def __init__(self, profile_id: ProfileId | None, merged: Sequence[ProfileId] = (),
                 refused: str | None = None, blocked: int = 0, dropped: int = 0,
                 linked: bool = False) -> None:
        self.profile_id = profile_id
        # profiles absorbed into ``profile_id`` by this event (renames included)
        self.merged = merged
        # why a link was refused, e.g. "limit:user_id"; None when nothing was refused
        self.refused = refused
        self.blocked = blocked
        # identifiers the event named that no profile could take (limit reached)
        self.dropped = dropped
        # whether the profile's identifiers changed (a new one, or a merge)
        self.linked = linked


def profile_id_for(id_type: str, value: str) -> ProfileId:
    """Stable, opaque id: it must not reveal the identifier it comes from."""
    digest = hashlib.blake2b(f"{id_type}:{value}".encode(), digest_size=8).hexdigest()
    return f"p_{digest}"


def lookup_keys(key: str, id_types: Iterable[str]) -> list[tuple[str, str]]:
    """The identifiers a lookup key names, as (type, value), in the order to try them.

    ``type:value`` names one identifier when ``type`` is one of ``id_types``;
    any other key (a value that holds a colon included) may be a value of any
    type. The worker's ``/profile`` and ``profile --from`` read keys alike.
    """
    id_type, _, value = key.partition(":")
    types = list(id_types)
    if value and id_type in types:
        return [(id_type, value)]
    return [(t, key) for t in types]


class IdentityGraph:
    """Owns the identifier -> profile map and each profile's identifiers."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self._types = list(rules.limits)
        self._rank = {t: i for i, t in enumerate(self._types)}
        self._limit = dict(rules.limits)
        self._owners: dict[str, dict[str, ProfileId]] = {t: {} for t in rules.limits}
        # each profile's identifiers as one flat tuple (type, value, type, value...), in
        # the order they joined: a dict of lists per profile cost ~450 B more each
        self._members: dict[ProfileId, Members] = {}
        # profiles whose identifiers changed (or which were absorbed) since take_changed();
        # None while no changelog takes them (run, replay: the set would only grow)
        self.changed: set[ProfileId] | None = None
        # each pattern on its own: a back reference counts the groups of its own pattern,
        # and a pattern that starts with a literal (``@example.com$``) is looked for as one,
        # where one alternation of them all is tried at every position of every value
        self._junk = tuple(re.compile(p, re.IGNORECASE) for p in rules.blocklist_patterns)

    def __len__(self) -> int:
        return len(self._members)

    def is_junk(self, value: str) -> bool:
        if value.lower() in self.rules.blocklist_values:
            return True
        for pattern in self._junk:  # noqa: SIM110 (a cpdef method holds no generator)
            if pattern.search(value) is not None:
                return True
        return False

    def owner(self, id_type: str, value: str) -> ProfileId | None:
        owners = self._owners.get(id_type)
        return None if owners is None else owners.get(value)

    def identifiers(self, profile_id: ProfileId) -> dict[str, list[str]]:
        """A profile's identifiers by type (a new dict: the graph keeps them flat)."""
        return by_type(self._members[profile_id])

    def profiles(self) -> Iterable[ProfileId]:
        return self._members.keys()

    def resolve(self, identity: Mapping[str, str]) -> Resolution:
        """Attribute one event's identifiers; merges or refuses as the rules say."""
        owners_by_type = self._owners
        # the lists are made only when needed: most events name one known profile
        first: ProfileId | None = None  # the first profile found
        found: list[ProfileId] | None = None  # every profile found, once there are two
        new: list[tuple[int, str, str]] | None = None
        blocked = 0
        for id_type, value in identity.items():
            owners = owners_by_type.get(id_type)
            if owners is None:
                continue
            pid = owners.get(value)
            if pid is not None:
                if first is None:
                    first = pid
                elif pid != first and (found is None or pid not in found):
                    if found is None:
                        found = [first]
                    found.append(pid)
            elif self.is_junk(value):
                blocked += 1
            elif new is None:
                new = [(self._rank[id_type], id_type, value)]
            else:
                new.append((self._rank[id_type], id_type, value))
        if new is None and found is None:  # the common case: nothing to link
            # positional: keywords cost a compiled constructor ~400 instructions an event
            return Resolution(first, (), None, blocked)
        if found is None:
            found = [] if first is None else [first]
        if new is None:
            new = []
        over = self._over_limit(found, new)
        if over is None:
            survivor, merged = self._union(found, new)
            return Resolution(survivor, merged=merged, blocked=blocked, linked=True)
        return self._refuse(found, new, identity, f"limit:{over}", blocked)

    def _over_limit(self, found: list[ProfileId], new: list[tuple[int, str, str]]) -> str | None:
        """The strongest identifier type whose limit the merged group would break."""
        if len(found) <= 1 and not new:
            return None
        counts: dict[str, int] = {}
        for pid in found:
            members = self._members[pid]
            for id_type in members[::2]:
                counts[id_type] = counts.get(id_type, 0) + 1
        for _, id_type, _ in new:
            counts[id_type] = counts.get(id_type, 0) + 1
        broken = [t for t, n in counts.items() if n > self._limit[t]]
        return min(broken, key=self._rank.__getitem__) if broken else None

    def _union(self, found: list[ProfileId],
               new: list[tuple[int, str, str]]) -> tuple[ProfileId, list[ProfileId]]:
        rank = self._rank
        best = min([(rank[t], v) for p in found for t, v in pairs(self._members[p])]
                   + [(r, v) for r, _, v in new])
        survivor = profile_id_for(self._types[best[0]], best[1])
        target = list(self._members.get(survivor, ()))
        merged = [p for p in found if p != survivor]
        for pid in merged:
            members = self._members.pop(pid)
            for id_type, value in pairs(members):
                self._owners[id_type][value] = survivor
            target += members
        for r, id_type, value in new:
            self._owners[id_type][value] = survivor
            target += (self._types[r], value)  # the one string per type, not the event's
        self._members[survivor] = tuple(target)
        if self.changed is not None:
            self.changed.add(survivor)
            self.changed.update(merged)
        return survivor, merged

    def every_identifier(self) -> Iterator[tuple[str, str, ProfileId]]:
        """Every identifier held, as (type, value, its profile)."""
        for id_type, owners in self._owners.items():
            for value, pid in owners.items():
                yield id_type, value, pid

    def remove(self, pid: ProfileId) -> dict[str, list[str]]:
        """Forget a profile and every identifier of its group; returns them by type."""
        members = self._members.pop(pid)
        for id_type, value in pairs(members):
            self._owners[id_type].pop(value, None)
        if self.changed is not None:
            self.changed.add(pid)
        return by_type(members)

    # ---- state as one record per profile -----------------------------------------------

    def take_changed(self) -> list[tuple[ProfileId, IdentityRecord | None]]:
        """The profiles changed since the last call, each with its identifiers and strongest
        one, or None when it was absorbed; the owner map follows from them."""
        changed, self.changed = self.changed, set()
        return [(pid, self.record(pid)) for pid in sorted(changed or ())]

    def record(self, pid: ProfileId) -> IdentityRecord | None:
        """A profile's changelog value: its identifiers by type and its strongest one."""
        members = self._members.get(pid)
        if members is None:
            return None
        rank = self._rank
        return [by_type(members), list(min((rank[t], v) for t, v in pairs(members)))]

    def load(self, pid: ProfileId, members: dict[str, list[str]], best: Sequence[Any]) -> None:
        """One profile read back from the changelog (``best`` follows from ``members``)."""
        flat: list[str] = []
        for id_type, values in members.items():
            owners = self._owners[id_type]
            id_type = self._types[self._rank[id_type]]
            for value in values:
                owners[value] = pid
                flat += (id_type, value)
        self._members[pid] = tuple(flat)

    def _refuse(self, found: list[ProfileId], new: list[tuple[int, str, str]],
                identity: Mapping[str, str], reason: str, blocked: int) -> Resolution:
        """Link nothing across profiles; the strongest identifier decides the profile."""
        new_keys = {(t, v): (r, t, v) for r, t, v in new}
        target: ProfileId | None = None
        linked = False
        for _, id_type, value in sorted((self._rank[t], t, v) for t, v in identity.items()
                                        if t in self._rank):
            first = new_keys.get((id_type, value))
            if first is not None:  # the strongest usable identifier is new: it starts a profile
                target, _ = self._union([], [first])
                new = [n for n in new if n != first]
                linked = True
                break
            target = self._owners[id_type].get(value)
            if target is not None:
                break
        assert target is not None  # resolve() only refuses when some identifier is usable
        held = self._members[target][::2]
        dropped = 0
        fitting: list[tuple[int, str, str]] = []
        for item in new:
            _, id_type, _ = item
            taken = held.count(id_type) + sum(f[1] == id_type for f in fitting)
            if taken < self._limit[id_type]:
                fitting.append(item)
            else:
                dropped += 1
        merged: list[ProfileId] = []
        if fitting:
            target, merged = self._union([target], fitting)
            linked = True
        return Resolution(target, merged=merged, refused=reason, blocked=blocked,
                          dropped=dropped, linked=linked)


def pairs(members: Members) -> Iterator[tuple[str, str]]:
    """(type, value) pairs of a flat identifier tuple."""
    it = iter(members)
    return zip(it, it, strict=True)


def by_type(members: Members) -> dict[str, list[str]]:
    """A flat identifier tuple as lists of values per type, in the order they joined."""
    out: dict[str, list[str]] = {}
    for id_type, value in pairs(members):
        out.setdefault(id_type, []).append(value)
    return out
