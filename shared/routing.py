"""One way to route events: handlers register for a payload type and get it typed.

A service declares its routes once, at module level, over the context its handlers need::

    routes: Routes[Ledger] = Routes()

    @routes.on(PurchaseCompleted, load=load_buyers)
    async def purchase_completed(
        ledger: Ledger, event: Event[PurchaseCompleted], uow: UnitOfWork
    ) -> None: ...

and bootstrap binds the context (``routes.bind(ledger)``). For each batch the consumer
first runs every ``load`` with the batch's events of its types (so what the batch touches
is read with one query per collection), then each event's handlers in order, then every
``after_batch`` step once (work done once for all the batch changed, e.g. rebuilding each
touched customer's figures once rather than once per event), all in one unit of work.
Several handlers of one type run in the order they were registered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from shared.events import Event, EventPayload
from shared.unit_of_work import UnitOfWork

C = TypeVar("C")
P = TypeVar("P", bound=EventPayload)

Handle = Callable[[C, Event[P], UnitOfWork], Awaitable[None]]
Load = Callable[[C, Sequence[Event[P]], UnitOfWork], Awaitable[None]]
Finish = Callable[[C, Sequence[Event[Any]], UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class _Route(Generic[C]):
    types: tuple[type[EventPayload], ...]
    handle: Handle[C, Any]
    load: Load[C, Any] | None


@dataclass
class Routes(Generic[C]):
    """Event handlers of one service, by payload type, over a context ``C``."""

    _routes: list[_Route[C]] = field(default_factory=list)
    _finishers: list[Finish[C]] = field(default_factory=list)

    def on(
        self, *types: type[P], load: Load[C, P] | None = None
    ) -> Callable[[Handle[C, P]], Handle[C, P]]:
        """Register the decorated handler for events whose payload is one of ``types``."""
        if not types:
            raise ValueError("a route names at least one payload type")

        def register(handle: Handle[C, P]) -> Handle[C, P]:
            self._routes.append(_Route(types, handle, load))
            return handle

        return register

    def after_batch(self, finish: Finish[C]) -> Finish[C]:
        """Register ``finish(context, events, uow)`` to run once per batch, after every
        handler of the batch and before its unit of work is written (``events``: the
        batch's events being applied, in order)."""
        self._finishers.append(finish)
        return finish

    def include(self, other: Routes[C]) -> None:
        """Add ``other``'s routes after these (a service whose handlers live in modules)."""
        self._routes.extend(other._routes)
        self._finishers.extend(other._finishers)

    def bind(self, context: C) -> BoundRoutes:
        return BoundRoutes(
            tuple((context, route) for route in self._routes),
            tuple((context, finish) for finish in self._finishers),
        )


@dataclass(frozen=True)
class BoundRoutes:
    """Routes with their contexts: what the consumer calls. ``a + b`` handles with both
    (for a service whose handlers need different contexts), ``a``'s first."""

    bindings: tuple[tuple[Any, _Route[Any]], ...] = ()
    finishers: tuple[tuple[Any, Finish[Any]], ...] = ()

    def __add__(self, other: BoundRoutes) -> BoundRoutes:
        return BoundRoutes(self.bindings + other.bindings, self.finishers + other.finishers)

    @cached_property
    def event_types(self) -> frozenset[str]:
        return frozenset(kind.event_type for _, route in self.bindings for kind in route.types)

    def handles(self, event_type: str) -> bool:
        return event_type in self.event_types

    @cached_property
    def _by_type(self) -> dict[str, tuple[tuple[Any, _Route[Any]], ...]]:
        """The bindings of each event type, in registration order."""
        return {
            event_type: tuple(
                binding
                for binding in self.bindings
                if any(kind.event_type == event_type for kind in binding[1].types)
            )
            for event_type in self.event_types
        }

    async def load(self, events: Sequence[Event[Any]], uow: UnitOfWork) -> None:
        """Run each route's loader once, with the events of its types (in batch order)."""
        for context, route in self.bindings:
            if route.load is None:
                continue
            names = {kind.event_type for kind in route.types}
            mine = [event for event in events if event.type in names]
            if mine:
                await route.load(context, mine, uow)

    async def apply(self, event: Event[Any], uow: UnitOfWork) -> None:
        for context, route in self._by_type.get(event.type, ()):
            await route.handle(context, event, uow)

    async def finish(self, events: Sequence[Event[Any]], uow: UnitOfWork) -> None:
        """Run each ``after_batch`` step once, after every event of the batch was applied."""
        for context, finish in self.finishers:
            await finish(context, events, uow)
