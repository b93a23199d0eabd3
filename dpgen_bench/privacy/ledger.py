"""The ledger: what a method actually released, so the runner can recompute the spend."""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from .events import Event, event_from_dict, events_to_json

if TYPE_CHECKING:
    from .budget import PrivacyBudget


@dataclass(frozen=True)
class LedgerEntry:
    """One data-dependent release: the event and a human-readable note of what was released."""

    event: Event
    note: str = ""


@dataclass
class PrivacyLedger:
    """Append-only record of the mechanisms a method performed on the private data.

    Methods call :meth:`record` for every release *as it happens* (steps really taken, releases really
    made); the runner then calls :meth:`epsilon` and compares it with the target.
    """

    entries: list[LedgerEntry] = field(default_factory=list)

    def record(self, event: Event, note: str = "") -> None:
        self.entries.append(LedgerEntry(event, note))

    @property
    def events(self) -> list[Event]:
        return [e.event for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def epsilon(self, budget: "PrivacyBudget") -> float:
        """ε spent by everything recorded, at ``budget.delta``, with ``budget.accountant`` (0 if empty)."""
        from .accounting import epsilon

        if not self.entries:
            return 0.0
        return epsilon(self.events, budget.delta, accountant=budget.accountant)

    def within(self, budget: "PrivacyBudget") -> bool:
        """Whether the recorded releases spend at most ``budget`` (see :meth:`PrivacyBudget.admits`)."""
        return budget.admits(self.epsilon(budget))

    def to_json(self) -> str:
        return events_to_json(self.events)

    def to_dicts(self) -> list[dict]:
        return [{"note": e.note, **e.event.to_dict()} for e in self.entries]

    @classmethod
    def from_dicts(cls, rows: list[dict]) -> "PrivacyLedger":
        ledger = cls()
        for row in rows:
            row = dict(row)
            note = row.pop("note", "")
            ledger.record(event_from_dict(row), note)
        return ledger
