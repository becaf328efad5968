"""Telemetry capture: the orchestrator's routing decisions, pool executions, outcomes and
feedback, correlated by ``task_id`` into execution records, stored in batches, never lost.

Events are dicts, passed to ``TelemetryCapture.capture_*`` or published on a
:class:`MessageBus` under the event names below. ``task_id`` (a UUID or its string) is
required in every event: the same id from the router to the pool to the user's feedback.
Timestamps may be datetimes (naive = UTC), ISO 8601 strings or epoch seconds; a missing one
is the moment the event was captured. Unknown keys are ignored (kept in dead letters).

Routing decision (``capture_routing_decision``, ``orb_learning.routing_decision``):

- ``task_id`` (required), ``timestamp`` (optional; becomes the record's ``timestamp``);
- ``routing`` (required): a mapping, or an object with attributes (the router's
  ``ModelRouting``): ``tier`` or ``model_tier`` (required; an Enum gives its ``.value``),
  ``confidence`` or ``routing_confidence`` (required, 0-1), ``complexity_score`` (0-100,
  default 50; a float is rounded), ``cost_estimate`` or ``estimated_cost`` (default: derived
  as ``estimated_tokens / 1000 * cost_per_1k_tokens`` when ``cost_per_1k_tokens`` is
  there, else 0.0), ``pool`` or ``pool_type``, ``swarm_topology``, and ``model`` and
  ``routing_reason`` (both kept in ``metadata``);
- ``task_data``: ``description`` / ``prompt`` / ``task_description`` (required: it is what
  is embedded), ``type`` / ``task_type`` (default "unknown"), ``repo`` / ``repo_path``
  (default "unknown"), ``files`` (a list: ``file_count`` is its length) or ``file_count``
  (default 0), ``estimated_tokens`` (default 0), ``swarm_topology``, ``complexity_score``
  (when the routing has none), ``metadata`` (a mapping, merged into the record's).

Pool start (``capture_pool_execution_start``, ``orb_learning.pool_execution_start``):
``task_id`` (required), ``pool_id``, ``pool_type``, ``timestamp``. Optional: it gives the
duration when the outcome has none, and the pool when the routing names none.

Outcome (``capture_execution_outcome``, ``orb_learning.execution_outcome``) and pool
completion (``capture_pool_execution_complete``, ``orb_learning.pool_execution_complete``),
which take the same keys, including a pool's raw result ``{pool_id, worker_id, status,
output, error, duration}`` plus the task's ``task_id``:

- ``task_id`` (required); ``success`` (bool) or else ``status`` (required: "completed"
  means success, any other status failure);
- ``duration_seconds`` or ``duration`` (default: derived from the pool start's timestamp
  to the outcome's ``timestamp``; the record waits for the pool start until then);
- ``quality_score`` (0-100), ``actual_cost`` or ``cost`` (default 0.0), ``error_message``
  or ``error``, ``error_type`` (an ``ErrorType`` or text, classified by
  ``ErrorType.from_text``; default: classified from the error message of a failure);
- ``pool_id``, ``worker_id`` (kept in ``metadata``), ``pool_type``, ``peak_memory_mb``,
  ``cpu_time_seconds``, ``solution_summary``, ``timestamp``.

Derived: ``pool_type`` is the routing's ``pool``/``pool_type``, else the outcome's or the
pool start's ``pool_type``, else ``pool_id``, else "unknown". ``metadata`` is the task's
metadata plus ``model``, ``routing_reason``, ``pool_id`` and ``worker_id`` when known.
``user_accepted`` and ``user_rating`` stay None: feedback sets them. A pool start that
arrives after its task's record is kept aside for a rerun of the task, not dead-lettered.

Feedback (``capture_feedback``, ``orb_learning.feedback``): ``task_id`` and ``rating``
(1-5) required; ``feedback_type`` (default "rating"), ``comment``, ``user_id`` (a UUID;
None = anonymous), ``feedback_id`` (default: a new UUID), ``timestamp``.

An event that breaks these rules is rejected: logged with the reason, counted in
``events_rejected``, and never raised into the caller. The call itself refuses only what is
plainly malformed (not a mapping, no task_id or one that is neither a UUID nor a string, a
routing decision without ``routing``, an outcome without ``success`` or ``status``); the
rest is validated right behind the call, on the event loop (see :mod:`._intake`).

The event is read at the call, all of it (dicts, lists, a router's routing object by its
public attributes, enums by value, datetimes), into the JSON text the journal keeps: the
caller may reuse or change any of it afterwards. Once a capture call has returned, its
event survives a crash of the process (see :mod:`._journal` for a crash of the machine, and
``durability="fsync"``); ``shutdown()`` returns a :class:`ShutdownReport` of what it left
where, by its timeout.
"""

from __future__ import annotations

from ._capture import TelemetryCapture
from ._lifecycle import ShutdownReport
from ._spool import DEFAULT_SPOOL_PATH
from ._storing import EXECUTION_RECORD
from .bus import (
    EVENT_TYPES,
    EXECUTION_OUTCOME,
    FEEDBACK,
    POOL_EXECUTION_COMPLETE,
    POOL_EXECUTION_START,
    ROUTING_DECISION,
    Handler,
    InProcessMessageBus,
    MessageBus,
)

__all__ = [
    "DEFAULT_SPOOL_PATH",
    "EVENT_TYPES",
    "EXECUTION_OUTCOME",
    "EXECUTION_RECORD",
    "FEEDBACK",
    "POOL_EXECUTION_COMPLETE",
    "POOL_EXECUTION_START",
    "ROUTING_DECISION",
    "Handler",
    "InProcessMessageBus",
    "MessageBus",
    "ShutdownReport",
    "TelemetryCapture",
]
