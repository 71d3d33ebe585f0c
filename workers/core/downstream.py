"""Where the identity stage sends the events of known profiles: the base class of both.

The in-process half of the pipeline (:class:`~workers.core.profile_work.ProfileWork`)
and the router to the profile partitions (:class:`~workers.core.partitioned.router.
PartitionRouter`) take the stage's events and tick ends. A base class, not a protocol:
compiled, the stage calls :meth:`event` and :meth:`run_tick` through a C method table
(a Python method call cost ~700 instructions each, for every event and every tick).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.core.forget import ForgetRequest
from workers.core.identity import ProfileId, Resolution
from workers.core.records import Output
from workers.core.touchpoints import Touchpoint


class Downstream:
    """The stage's downstream; appends its outputs to ``out``."""

    out: list[Output]

    def event(self, tp: Touchpoint, res: Resolution) -> None:
        """An event of the profile ``res.profile_id`` (never None here)."""
        raise NotImplementedError

    def run_tick(self, final: bool = False) -> None:
        """The tick ended: the profiles touched in it are learned from and assessed;
        ``final``: at a flush (the end of the input, or an idle stream)."""
        raise NotImplementedError

    def forget(self, pid: ProfileId, members: Mapping[str, list[str]],
               request: ForgetRequest) -> None:
        """The profile ``pid`` (whose identifiers were ``members``) is forgotten."""
        raise NotImplementedError

    def meta_state(self) -> dict[str, Any]:
        """What of it a state file or changelog keeps, besides the keyed stores."""
        raise NotImplementedError

    def load_meta(self, meta: dict[str, Any]) -> None:
        """Continue from :meth:`meta_state`."""
        raise NotImplementedError
