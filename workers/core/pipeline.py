"""The processing core of ``run``, ``replay`` and the worker: raw records in, outputs out.

No Kafka, no clock. The shells add only where bytes come from and where records
go (plus the wall-clock ``emitted_at`` a sink stamps on each record).

A :class:`Pipeline` is the :class:`~workers.core.identity_stage.IdentityStage`
(intake and identity decisions) with the per-profile half,
:class:`~workers.core.profile_work.ProfileWork`, attached in the same process
and learning at once with one :class:`~workers.core.segments.SegmentModel`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workers.config import Config
from workers.core.audiences import AudienceKeys
from workers.core.features import FeatureSpec
from workers.core.identity import ProfileId
from workers.core.identity_stage import IdentityStage
from workers.core.profile_work import ProfileWork
from workers.core.records import PersonaCard, ProfileSnapshot
from workers.core.segments import SegmentModel, Snapshot
from workers.core.stats import Stats  # noqa: F401 (older state files name it here)
from workers.state.store import ProfileStore


class InlineLearner:
    """The model itself: a learn may publish a version, in force from the next profile."""

    def __init__(self, model: SegmentModel) -> None:
        self.model = model

    @property
    def snapshot(self) -> Snapshot | None:
        return self.model.snapshot

    def learn(self, pid: ProfileId, vector: list[float], ts: float) -> Snapshot | None:
        return self.model.learn(vector, ts)


class Pipeline(IdentityStage):
    """Stateful core shared by every shell."""

    def __init__(self, config: Config) -> None:
        self.spec = FeatureSpec(config.features)
        self.model = SegmentModel(config.segmentation, self.spec)
        super().__init__(config, self._profile_work)

    def _profile_work(self, stage: IdentityStage) -> ProfileWork:
        # the features an assessment or a learn reads: the others are not worked out
        self.work = ProfileWork(self.config, self.spec, InlineLearner(self.model),
                                stage.graph, stage.stats, [], frozenset(self.model.columns))
        return self.work

    # ---- the per-profile half, as the shells read it -----------------------------------

    def load_meta(self, meta: dict[str, Any]) -> None:
        super().load_meta(meta)
        self.work.stats = self.stats  # one count for both halves

    @property
    def profiles(self) -> ProfileStore:
        return self.work.profiles

    @profiles.setter
    def profiles(self, store: ProfileStore) -> None:
        self.work.profiles = store

    @property
    def changed_profiles(self) -> set[ProfileId] | None:
        """Profiles changed (or absorbed) since the state's last commit took them (None
        while no changelog takes them)."""
        return self.work.changed_profiles

    @changed_profiles.setter
    def changed_profiles(self, changed: set[ProfileId] | None) -> None:
        self.work.changed_profiles = changed

    @property
    def names(self) -> dict[int, str]:
        return self.work.names

    @property
    def sizes(self) -> dict[int, int]:
        return self.work.sizes

    @property
    def audience_keys(self) -> AudienceKeys:
        return self.work.audience_keys

    def personas(self) -> list[PersonaCard]:
        return self.work.personas()

    def profile_snapshot(self, pid: ProfileId) -> ProfileSnapshot:
        return self.work.profile_snapshot(pid, self.graph.rules.limits)

    def profile_snapshots(self) -> Iterator[ProfileSnapshot]:
        """Every profile in profile-id order: ``profiles.jsonl``, the same for every store."""
        for pid in sorted(self.profiles):
            yield self.profile_snapshot(pid)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        snapshot = self.model.snapshot
        return {
            "events_read": s.events_read,
            "events_valid": s.events_valid,
            "events_invalid": s.events_invalid,
            "events_duplicate": s.events_duplicate,
            "profiles": len(self.profiles),
            "segment_changes": s.segment_changes,
            "identity_merges": s.identity_merges,
            "segments": 0 if snapshot is None else len(snapshot.segments),
            "model_version": 0 if snapshot is None else snapshot.version,
            "invalid_by_error": dict(sorted(s.invalid_by_error.items())),
            "merges_refused": dict(sorted(s.merges_refused.items())),
            "changes_by_reason": dict(sorted(s.changes_by_reason.items())),
            "identifiers_blocked": s.identifiers_blocked,
            "identifiers_dropped": s.identifiers_dropped,
            "traits_dropped": s.traits_dropped,
            # optional fields left out, and values made usable, by field (docs/contracts.md)
            "fields_dropped": dict(sorted(self.intake.parser.optional.dropped.items())),
            "values_coerced": dict(sorted(self.intake.parser.optional.coerced.items())),
            "records_without_events": s.records_without_events,
            # events naming a forgotten identifier (dropped), and profiles forgotten
            "events_forgotten": s.events_forgotten,
            "profiles_forgotten": s.profiles_forgotten,
            # valid events more than intake.dedup_window_seconds behind the stream's clock:
            # checked for duplicates only against their profile's recent event ids
            "events_beyond_dedup_window": self.dedup.beyond_window,
        }
