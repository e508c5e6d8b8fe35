"""Plausible usage history for the demo organization: several models and actions, busy
weekdays and quiet weekends, recorded through the engine as if it had happened live."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from core.clock import FrozenClock
from core.orgs import Organization
from limits import LimitEngine, UsageInput
from tally.runtime import Runtime

WEEKDAY_LOAD = (1.0, 1.05, 1.1, 1.0, 0.9, 0.45, 0.35)
EVENTS_PER_BUSY_HOUR = 9
CHAT_MODELS = (("gpt-4o-mini", 0.5), ("gpt-4o", 0.3), ("claude-sonnet-4", 0.2))
CHAT_ACTIONS = (("chat_reply", 0.7), ("summary", 0.2), ("agent_tool", 0.1))


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in table], [weight for _, weight in table])[0]


def _hour_load(hour: int) -> float:
    """Busy from 9:00 to 18:00 (UTC+1), quiet at night."""
    return 0.12 + 0.88 * float(max(0.0, math.sin(math.pi * (hour + 1 - 7) / 13)) ** 1.5)


def _events(rng: random.Random, hour: datetime, serial: int) -> Iterator[UsageInput]:
    expected = EVENTS_PER_BUSY_HOUR * WEEKDAY_LOAD[hour.weekday()] * _hour_load(hour.hour)
    for n in range(int(rng.expovariate(1 / expected)) if expected else 0):
        when = hour + timedelta(seconds=rng.randrange(3600))
        key = f"demo:{serial}:{n}"
        if rng.random() < 0.15:
            tokens = rng.randint(200, 2_400)
            yield UsageInput(
                "tokens",
                tokens,
                key,
                when,
                {
                    "model": "text-embedding-3-small",
                    "action": "embedding",
                    "input_tokens": tokens,
                    "output_tokens": 0,
                },
            )
            continue
        action = _pick(rng, CHAT_ACTIONS)
        prompt = rng.randint(2_000, 6_000) if action == "summary" else rng.randint(600, 3_200)
        reply = rng.randint(80, 650)
        yield UsageInput(
            "tokens",
            prompt + reply,
            key,
            when,
            {
                "model": _pick(rng, CHAT_MODELS),
                "action": action,
                "input_tokens": prompt,
                "output_tokens": reply,
            },
        )


async def seed_history(
    runtime: Runtime, organization: Organization, now: datetime, days: int = 30, seed: int = 7
) -> int:
    """Record `days` of usage up to `now`, a day per transaction; returns the event count."""
    clock = FrozenClock(now)
    engine = LimitEngine(runtime.engine.plugins, clock, runtime.engine.prices)
    rng = random.Random(seed)
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    total = 0
    for day in range(days + 1):
        day_start = start + timedelta(days=day)
        hours = [day_start + timedelta(hours=h) for h in range(24)]
        batch = [
            event
            for serial, hour in enumerate(hours, start=day * 24)
            if hour < now
            for event in _events(rng, hour, serial)
            if event.occurred_at is not None and event.occurred_at <= now
        ]
        if not batch:
            continue
        clock.set(min(max(e.occurred_at for e in batch if e.occurred_at), now))
        async with runtime.db.write() as session:
            await engine.record(session, organization, batch)
        total += len(batch)
    return total
