"""Central work without a central process: services, schedules and fleet requests."""

from __future__ import annotations

import typing

from worker.services.fleet import Fleet
from worker.services.schedules import ScheduledRun, Scheduler, Schedules
from worker.services.service import Service, ServiceHost, Services

__all__: typing.Sequence[str] = (
    "Fleet",
    "ScheduledRun",
    "Scheduler",
    "Schedules",
    "Service",
    "ServiceHost",
    "Services",
)
