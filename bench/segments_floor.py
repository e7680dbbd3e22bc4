"""How fast can PostgreSQL count the two broad segments of bench/segments.py on this machine, whatever the SQL?

    .venv/bin/python bench/segments_floor.py [--runs 15]

bench/segments.py compares the service with the same conditions written by hand on the service's schema. This one
asks whether another schema would reach the 100 ms target: for the `any` group matching 318,181 of the million
contacts and for the nested mix, it times only the count (the preview's ten rows and the API add ~5-10 ms) written
several ways, each over the structures it needs, built here for the run:

- `service`: the conditions as the service compiles them (GIN on the jsonb `tag_names` and `attributes`).
- `exact-gin`: GIN indexes on text[] expressions (`tag`, `key=value`, `source=...`, `optedOut=...`), whose matches
  are exact (no recheck of the row), with the conditions ANDed above an `any` group pushed into each branch so that
  one GIN scan intersects them.
- `facts-union`, `facts-incl-excl`: an index-only table of (merchant, fact, contact) rows, counted without reading
  contacts at all: a UNION of the facts' contacts, or |A| + |B| - |A and B| by a merge join.
- `seq-scan`: a parallel sequential scan of the contacts.

Reuses the database seeded by bench/inbox.py (`mktx_bench_inbox`), seeding it first if needed. Everything built here
lives in the schema `floor` (and indexes named `floor_*`) and is dropped at the end. JIT is off and work_mem 64 MB for
every formulation. Counts are checked equal. The last lines print the fastest count of each segment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import bench_env
from bench.inbox import DATABASE, REDIS_URL, database_url, ensure_seeded
from bench.segments import segments

BUILD = [
    "DROP SCHEMA IF EXISTS floor CASCADE",
    "CREATE SCHEMA floor",
    """CREATE FUNCTION floor.texts(arr jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
       SELECT coalesce(array_agg(x), '{}') FROM jsonb_array_elements_text(
           CASE WHEN jsonb_typeof(arr) = 'array' THEN arr ELSE '[]' END) x $$""",
    """CREATE FUNCTION floor.pairs(attrs jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
       SELECT coalesce(array_agg(key || '=' || (value #>> '{}')), '{}') FROM jsonb_each(
           CASE WHEN jsonb_typeof(attrs) = 'object' THEN attrs ELSE '{}' END)
       WHERE jsonb_typeof(value) = 'string' $$""",
    """CREATE FUNCTION floor.facts(tags jsonb, attrs jsonb, src text, optout bool) RETURNS text[]
       LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
       SELECT floor.texts(tags) || floor.pairs(attrs) || ARRAY['source=' || src, 'optedOut=' || optout::text] $$""",
    "CREATE INDEX floor_tags ON contacts_contact USING gin (floor.texts(tag_names))",
    "CREATE INDEX floor_pairs ON contacts_contact USING gin (floor.pairs(attributes))",
    "CREATE INDEX floor_facts ON contacts_contact USING gin (floor.facts(tag_names, attributes, source, opted_out))",
    """CREATE TABLE floor.fact AS
       SELECT merchant_id, 'tag:' || t AS fact, id AS contact_id
       FROM contacts_contact, jsonb_array_elements_text(tag_names) t
       UNION ALL
       SELECT merchant_id, 'attr:' || key || '=' || (value #>> '{}'), id
       FROM contacts_contact, jsonb_each(attributes) WHERE jsonb_typeof(value) = 'string'""",
    "CREATE INDEX floor_fact ON floor.fact (merchant_id, fact, contact_id)",
    "VACUUM ANALYZE floor.fact",
    "ANALYZE contacts_contact",
]

F = "FROM floor.fact WHERE merchant_id = %(m)s AND fact = "
SOURCE_OPTED_IN = "'{source=inbound_message,optedOut=false}'"
RECENT = "c.last_interaction_at >= now() - interval '3 days'"
LOYAL = "mktx_attr_num(c.attributes, 'purchaseCount') >= 15"
FACTS = "floor.facts(c.tag_names, c.attributes, c.source, c.opted_out)"
# the same conditions again, written over the structures built above
OTHER_WAYS: dict[str, dict[str, str]] = {
    "tag-in-any-group": {
        "exact-gin": """(floor.texts(c.tag_names) @> '{wholesale}'
            OR floor.pairs(c.attributes) @> '{membershipTier=platinum}')""",
        "facts-union": f"""SELECT count(*) FROM (
            SELECT contact_id {F} 'tag:wholesale' UNION SELECT contact_id {F} 'attr:membershipTier=platinum') u""",
        "facts-incl-excl": f"""SELECT (SELECT count(*) {F} 'tag:wholesale')
            + (SELECT count(*) {F} 'attr:membershipTier=platinum')
            - (SELECT count(*) FROM floor.fact a JOIN floor.fact b USING (contact_id)
               WHERE a.merchant_id = %(m)s AND a.fact = 'tag:wholesale'
                 AND b.merchant_id = %(m)s AND b.fact = 'attr:membershipTier=platinum')""",
    },
    "nested-mix": {
        "exact-gin": f"""(({FACTS} @> '{{loyal,source=inbound_message,optedOut=false}}' AND {LOYAL})
            OR ({RECENT} AND {FACTS} @> {SOURCE_OPTED_IN}))""",
    },
}


def formulations() -> dict[str, dict[str, str]]:
    """segment -> way -> count SQL. `service` and `seq-scan` are bench/segments.py's hand-written filter (the
    same as the service's compiled SQL), the second with index scans switched off; the rest are OTHER_WAYS, whose
    filters on contacts (not starting with SELECT) get the same merchant scope."""

    def on_contacts(where: str) -> str:
        return f"SELECT count(*) FROM contacts_contact c WHERE c.merchant_id = %(m)s AND {where}"

    written = segments(datetime.now(tz=UTC))
    ways: dict[str, dict[str, str]] = {}
    for segment, others in OTHER_WAYS.items():
        service = on_contacts(written[segment][1])
        ways[segment] = {"service": service, "seq-scan": service}
        for way, sql in others.items():
            ways[segment][way] = sql if sql.startswith("SELECT") else on_contacts(sql)
    return ways


def timed(conn: psycopg.Connection, sql: str, merchant_id: str, seq_scan: bool) -> tuple[float, int]:
    switch = "off" if seq_scan else "on"
    conn.execute(f"SET enable_bitmapscan = {switch}")
    conn.execute(f"SET enable_indexscan = {switch}")
    started = time.perf_counter()
    row = conn.execute(sql, {"m": merchant_id}).fetchone()
    elapsed = time.perf_counter() - started
    assert row is not None
    return elapsed, int(row[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15, help="counts per formulation")
    args = parser.parse_args()

    merchant_id = ensure_seeded(bench_env(DATABASE, REDIS_URL=REDIS_URL), args.contacts)
    with psycopg.connect(database_url(), autocommit=True) as conn:
        try:
            started = time.perf_counter()
            for statement in BUILD:
                conn.execute(statement)
            print(f"structures built in {time.perf_counter() - started:.1f} s", flush=True)
            conn.execute("SET jit = off")
            conn.execute("SET work_mem = '64MB'")
            fastest: dict[str, tuple[float, str]] = {}
            for segment, ways in formulations().items():
                totals = set()
                for way, sql in ways.items():
                    seq = way == "seq-scan"
                    for _ in range(3):  # warm
                        timed(conn, sql, merchant_id, seq)
                    runs = [timed(conn, sql, merchant_id, seq) for _ in range(args.runs)]
                    p50 = statistics.median(elapsed for elapsed, _ in runs) * 1000
                    totals |= {total for _, total in runs}
                    print(f"{segment:17s} {way:16s} count p50 {p50:6.1f} ms  ({runs[0][1]:,} matches)", flush=True)
                    if segment not in fastest or p50 < fastest[segment][0]:
                        fastest[segment] = (p50, way)
                if len(totals) != 1:
                    raise RuntimeError(f"{segment}: the formulations disagree: {sorted(totals)}")
        finally:
            conn.execute("RESET ALL")
            conn.execute("DROP SCHEMA IF EXISTS floor CASCADE")
    for segment, (p50, way) in fastest.items():
        print(f"fastest count of {segment}: {p50:.1f} ms ({way}), before the preview's rows and the API")
    return 0


if __name__ == "__main__":
    sys.exit(main())
