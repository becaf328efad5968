"""Which of the primary's WAL senders (``pg_stat_replication``) streams to each read server.

Nothing in PostgreSQL names a standby on both sides, so the match narrows the senders by
what the replica's ``pg_stat_wal_receiver`` says of its own connection, and keeps a sender
only when exactly one is left:

1. the replica is a copy of this primary (the same ``system_identifier``), and its WAL
   receiver is visible (a role without ``pg_read_all_stats`` sees none of its columns);
2. a receiver on a replication slot: the sender holding that slot (unique by itself);
   without one: the senders without a slot whose ``application_name`` is the receiver's
   (its ``application_name``, else ``cluster_name``, else ``walreceiver``);
3. several left (replicas that all say ``walreceiver``): those whose ``client_addr`` is
   the replica's own address (``inet_server_addr()``), when that leaves any;
4. a sender two replicas would claim is neither's.

So an unnamed replica among several on one host is not matched (``None``): give each its
own slot or ``application_name`` in ``primary_conninfo``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

# On the primary: each sender with the slot it holds; lags in seconds.
SENDERS_SQL = """
SELECT r.pid, r.application_name, host(r.client_addr) AS addr, r.state, r.sync_state,
       extract(epoch FROM r.write_lag)::float8 AS write_lag,
       extract(epoch FROM r.flush_lag)::float8 AS flush_lag,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag,
       s.slot_name::text AS slot_name
FROM pg_stat_replication r
LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
ORDER BY r.pid
"""
SYSTEM_SQL = "SELECT system_identifier FROM pg_control_system()"
# On a replica: its identity and its WAL receiver's connection (NULLs when not visible).
RECEIVER_SQL = """
SELECT (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       host(inet_server_addr()) AS addr,
       current_setting('cluster_name') AS cluster_name,
       w.status, w.slot_name::text AS slot_name, w.conninfo
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_wal_receiver w ON true
"""
SHOWN = ("application_name", "addr", "state", "sync_state", "write_lag", "flush_lag",
         "replay_lag", "slot_name")  # fmt: skip
_PAIR = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


def conninfo_value(conninfo: str, key: str) -> str | None:
    """A key's value in a libpq key/value string (quotes and escapes undone)."""
    for name, raw in _PAIR.findall(conninfo):
        if name == key:
            if raw.startswith("'"):
                return re.sub(r"\\(.)", r"\1", raw[1:-1])
            return str(raw)
    return None


def receiver_name(receiver: Mapping[str, Any]) -> str:
    """The ``application_name`` the receiver gave the primary."""
    conninfo = receiver.get("conninfo") or ""
    named = conninfo_value(conninfo, "application_name")
    if named:
        return named
    return receiver.get("cluster_name") or "walreceiver"


def candidates(
    receiver: Mapping[str, Any] | None, senders: Sequence[Mapping[str, Any]], primary_id: Any
) -> list[Mapping[str, Any]]:
    """The senders that may stream to the replica with this receiver (rules 1 to 3)."""
    if receiver is None or receiver.get("status") is None:
        return []
    if primary_id is None or receiver.get("system_identifier") != primary_id:
        return []
    slot = receiver.get("slot_name")
    if slot:
        return [s for s in senders if s.get("slot_name") == slot]
    name = receiver_name(receiver)
    left = [s for s in senders if not s.get("slot_name") and s.get("application_name") == name]
    if len(left) > 1:
        here = [s for s in left if s.get("addr") is not None and s["addr"] == receiver.get("addr")]
        left = here or left
    return left


def match(
    receivers: Sequence[Mapping[str, Any] | None],
    senders: Sequence[Mapping[str, Any]],
    primary_id: Any,
) -> list[dict[str, Any] | None]:
    """Per receiver (one per read server, ``None`` for a server not asked): its sender's
    :data:`SHOWN` columns, or ``None`` when not exactly one matches (rule 4 included)."""
    found = [candidates(receiver, senders, primary_id) for receiver in receivers]
    claimed = Counter(left[0]["pid"] for left in found if len(left) == 1)
    return [
        {key: left[0].get(key) for key in SHOWN}
        if len(left) == 1 and claimed[left[0]["pid"]] == 1
        else None
        for left in found
    ]
