"""What this member does about its place in the group, beyond consuming its partitions.

Two duties follow each rebalance and each look at the group: pacing at the share of the
rate limits that its partitions give (`worker.budget`), and noticing, as a standby, a
group whose input nobody consumes (`worker.standby`). Either may be absent (tests, fakes).
"""

from __future__ import annotations

from dataclasses import dataclass

from poster_genres.worker.budget import GroupBudget
from poster_genres.worker.standby import StandbyWatch


@dataclass
class Membership:
    """This member's rate budget and standby watch, each optional."""

    budget: GroupBudget | None = None
    standby: StandbyWatch | None = None

    def regrouped(self, held: int) -> str:
        """After a rebalance: take the share `held` partitions give; a note for the log line."""
        if self.budget is None:
            return ""
        return f"; share of the rate limits {self.budget.update(held):.3f}"

    def look(self, assigned: int) -> None:
        """Every few seconds (the Kafka thread): let the standby watch look at the group."""
        if self.standby is not None:
            self.standby.check(assigned)

    @property
    def stalled(self) -> str | None:
        """Why this member is not ready although in its group (None: no reason)."""
        return self.standby.stalled if self.standby is not None else None
