"""What every step of a run needs: its context (store, home, reporter, clock, how machines are made and reached),
and the record of its steps as events, run on one machine or on every machine at once.

:class:`RunSteps` is the base of the run: :class:`orchestrator.provision.Provisioning` adds the launch attempts and
:class:`orchestrator.lifecycle._Run` the steps on the machines, eviction recovery and the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.catalog.spot import SpotQuoter, launch_quoter
from orchestrator.errors import RunInterrupted
from orchestrator.fanout import GroupResult, fan_out
from orchestrator.machine import Machine
from orchestrator.providers import get_provider
from orchestrator.remote.connect import Connector, transport_to
from orchestrator.remote.session import Session
from orchestrator.store import Store, StoreLeases

if TYPE_CHECKING:
    from orchestrator.plan import Plan
    from orchestrator.providers.base import Provider


class Reporter(Protocol):
    """How the lifecycle tells the user what happens; the CLI renders it."""

    def step(self, run_id: str, step: str, outcome: str, detail: str | None) -> None:
        """A step started (outcome "start") or ended (ok, failed, interrupted, skipped)."""
        ...

    def output(self, text: str) -> None:
        """New text from the payload's log."""
        ...

    def upload(self, host: str, sent: int, total: int) -> None:
        """Progress of the payload bundle's upload to one machine."""
        ...


@dataclass
class RunContext:
    """What a run needs from outside: where state lives, whom to tell, the clock, and how machines are made and
    reached (both injectable, so the lifecycle runs in-process against a fake provider)."""

    store: Store
    home: Path
    reporter: Reporter
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_interval_s: float = 0.5
    checkpoint_poll_s: float = 5.0  # one-machine spot runs: the least time between looks at the payload's backups
    eviction_poll_s: float = 15.0  # one-machine spot runs: how often the provider is asked if the machine is there
    provider_factory: Callable[[str], Provider] | None = None  # default: the registry, leases from the store
    connect: Connector = transport_to
    allowed_cidr: str | None = None  # clouds: who may reach port 22 (resolved before the run: orchestrator.access)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # by provider, e.g. aws: profile
    # How a provider's spot machines are priced at launch (default: catalog.spot.launch_quoter; tests inject one).
    spot_quoter: Callable[[str], SpotQuoter | None] | None = None
    _providers: dict[str, Provider] = field(default_factory=dict, repr=False)

    def provider(self, name: str) -> Provider:
        """The run's one instance of a provider."""
        if name not in self._providers:
            factory = self.provider_factory or store_providers(self.home, self.store, self.provider_options)
            self._providers[name] = factory(name)
        return self._providers[name]

    def spot_quotes(self, provider: str) -> SpotQuoter | None:
        """How the provider's spot machines are priced at launch; None: at the catalog's price."""
        if self.spot_quoter is not None:
            return self.spot_quoter(provider)
        return launch_quoter(provider, home=self.home, options=self.provider_options.get(provider, {}))


def store_providers(
    home: Path, store: Store, options: dict[str, dict[str, Any]] | None = None
) -> Callable[[str], Provider]:
    """Providers by name, one instance each, the rented one with the store as its lease book (runs and `down`);
    ``options`` are each provider's settings by name (aws: ``{"profile": …}``)."""
    made: dict[str, Provider] = {}

    def provider(name: str) -> Provider:
        if name not in made:
            made[name] = get_provider(name, home, leases=StoreLeases(store), **(options or {}).get(name, {}))
        return made[name]

    return provider




class RunSteps:
    """One run's steps, each recorded as an event and told to the user; the machines it has reached (sessions)."""

    def __init__(self, plan: Plan, ctx: RunContext, run_id: str) -> None:
        self.plan = plan
        self.ctx = ctx
        self.run_id = run_id
        self.store = ctx.store
        self.sessions: list[Session] = []
        self.cancel = threading.Event()

    @property
    def machines(self) -> list[Machine]:
        return [session.machine for session in self.sessions]

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, str]]:
        """Records one lifecycle step as an event; the yielded dict's "detail" is stored with it."""
        event_id = self.store.start_event(self.run_id, name)
        self.ctx.reporter.step(self.run_id, name, "start", None)
        note: dict[str, str] = {}
        try:
            yield note
        except (RunInterrupted, KeyboardInterrupt):
            self.store.end_event(event_id, "interrupted", note.get("detail"))
            self.ctx.reporter.step(self.run_id, name, "interrupted", note.get("detail"))
            raise
        except BaseException as error:
            detail, why = note.get("detail"), str(error) or type(error).__name__
            self.store.end_event(event_id, "failed", detail if detail and why in detail else
                                 f"{detail}: {why}" if detail else why)
            self.ctx.reporter.step(self.run_id, name, "failed", str(error))
            raise
        outcome = note.get("outcome", "ok")
        self.store.end_event(event_id, outcome, note.get("detail"))
        self.ctx.reporter.step(self.run_id, name, outcome, note.get("detail"))

    def event(self, name: str, outcome: str, detail: str) -> None:
        """Records something that happened at once (a zone tried) as a finished event, and tells the user."""
        self.store.end_event(self.store.start_event(self.run_id, name), outcome, detail)
        self.ctx.reporter.step(self.run_id, name, outcome, detail)

    def on_every_machine(
        self, name: str, work: Callable[[Session], str],
        after: Callable[[GroupResult[Session, str]], None] | None = None,
    ) -> None:
        """Runs one step on every machine at once (one fan-out); fails with the first machine's error, named."""
        with self.step(name) as note:
            group = fan_out(self.sessions, work, name=lambda s: s.name, cancel=self.cancel, thread_name=name)
            note["detail"] = group.detail()
            if after is not None:
                after(group)
            group.raise_first()
