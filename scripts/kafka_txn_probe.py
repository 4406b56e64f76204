#!/usr/bin/env python3
"""Check, against a running broker, the Kafka behaviour the iotjobs runtime relies on (aiokafka).

Usage:
    scripts/kafka_txn_probe.py [BOOTSTRAP] [--iterations N] [--keep-topics]

BOOTSTRAP defaults to $IOTJOBS_KAFKA_BOOTSTRAP, else 127.0.0.1:9092. Start a broker first
(scripts/kafka.sh start). Every run uses fresh topic, group and transactional ids and deletes its
topics at the end (unless --keep-topics). Exit status: 0 if every check passed, 1 otherwise.

Checks:
  1. admin: create topics, including a compacted one (cleanup.policy=compact)
  2. transaction: two topics + send_offsets_to_transaction + commit; read_committed sees it
  3. abort: read_committed does not see aborted records (read_uncommitted does)
  4. fencing: a second producer with the same transactional_id fences the first
  5. RecordMetadata (offset) is available from the send future before the commit
  6. latency of a small transaction (begin, 2 sends, send_offsets_to_transaction, commit),
     back to back, for each --retry-backoff-ms value, plus one run with aiokafka's
     BACKOFF_OVERRIDE (the retry delay after CONCURRENT_TRANSACTIONS) monkeypatched; and a
     non-transactional idempotent baseline. aiokafka's produce-retry warnings are counted, not printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from typing import Any

import aiokafka
import aiokafka.producer.sender as sender_mod
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

RESULTS: list[tuple[str, bool, str]] = []


class RetryCounter(logging.Handler):
    """Counts aiokafka's "Got error produce response ..., retrying" warnings by error class."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "retrying" in msg:
            key = msg.rsplit("Error: ", 1)[-1].strip("<>' ").replace("class '", "")
            self.counts[key] = self.counts.get(key, 0) + 1

    def take(self) -> dict[str, int]:
        c, self.counts = self.counts, {}
        return c


RETRIES = RetryCounter()


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS.append((name, ok, detail))
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def exc_name(e: BaseException) -> str:
    return f"{type(e).__module__}.{type(e).__qualname__}: {e}"


class Probe:
    def __init__(self, bootstrap: str, iterations: int, backoffs: list[int], override: float | None) -> None:
        self.bs = bootstrap
        self.iterations = iterations
        self.backoffs = backoffs
        self.override = override
        run = uuid.uuid4().hex[:8]
        self.run = run
        self.t_events = f"probe-{run}-events"  # 3 partitions
        self.t_other = f"probe-{run}-other"  # 1 partition
        self.t_compact = f"probe-{run}-compact"  # compacted, 1 partition
        self.t_input = f"probe-{run}-input"  # "consumed" topic whose offsets go into txns
        self.group = f"probe-{run}-group"
        self.topics = [self.t_events, self.t_other, self.t_compact, self.t_input]
        self.admin: AIOKafkaAdminClient | None = None

    # ------------------------------------------------------------------ helpers
    def producer(self, txn_id: str | None, **kw: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bs,
            transactional_id=txn_id,
            enable_idempotence=txn_id is not None or kw.pop("idempotent", False),
            linger_ms=0,
            **kw,
        )

    async def read_all(
        self, topic: str, isolation: str, partitions: int = 1, settle_s: float = 1.0
    ) -> list[tuple[int, int, bytes | None, bytes | None]]:
        """All records of `topic` visible at `isolation` (partition, offset, key, value)."""
        c = AIOKafkaConsumer(
            bootstrap_servers=self.bs,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
            auto_offset_reset="earliest",
        )
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)  # LSO for read_committed, HW for read_uncommitted
            out = []
            deadline = time.monotonic() + settle_s + 5
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=200)
                for recs in batch.values():
                    out += [(r.partition, r.offset, r.key, r.value) for r in recs]
                positions = [await c.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
            return out
        finally:
            await c.stop()

    async def group_offsets(self) -> dict[TopicPartition, int]:
        assert self.admin
        res = await self.admin.list_consumer_group_offsets(self.group)
        return {tp: om.offset for tp, om in res.items()}

    # ------------------------------------------------------------------ 1
    async def step_topics(self) -> None:
        print("1. topics (admin client)")
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bs)
        await self.admin.start()
        new = [
            NewTopic(self.t_events, num_partitions=3, replication_factor=1),
            NewTopic(self.t_other, num_partitions=1, replication_factor=1),
            NewTopic(
                self.t_compact,
                num_partitions=1,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
            ),
            NewTopic(self.t_input, num_partitions=1, replication_factor=1),
        ]
        t0 = time.perf_counter()
        resp = await self.admin.create_topics(new)
        dt = (time.perf_counter() - t0) * 1000
        errors = [(t[0], t[1]) for t in resp.topic_errors if t[1] != 0]
        check(
            "create_topics (4 topics)",
            not errors,
            f"{dt:.0f} ms, response {type(resp).__name__}" + (f", errors {errors}" if errors else ""),
        )
        meta = await self.admin.describe_topics(self.topics)
        parts = {t["topic"]: len(t["partitions"]) for t in meta}
        check(
            "describe_topics partition counts",
            parts == {self.t_events: 3, self.t_other: 1, self.t_compact: 1, self.t_input: 1},
            str(parts),
        )
        cfg = await self.admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, self.t_compact, {"cleanup.policy": None})]
        )
        policy = None
        for r in cfg:
            for res in r.resources:
                for entry in res[4]:
                    if entry[0] == "cleanup.policy":
                        policy = entry[1]
        check(
            "compacted topic has cleanup.policy=compact",
            policy == "compact",
            f"describe_configs -> {policy!r}",
        )
        # a duplicate create is reported per topic, not raised
        resp = await self.admin.create_topics([NewTopic(self.t_other, 1, 1)])
        err = [for_code(t[1]).__name__ for t in resp.topic_errors if t[1] != 0]
        check(
            "re-creating an existing topic is reported in the response (not raised)",
            err == ["TopicAlreadyExistsError"],
            f"errors {err}",
        )

    # ------------------------------------------------------------------ 2
    async def step_commit(self) -> None:
        print("2. transaction commit with send_offsets_to_transaction")
        p = self.producer(f"probe-{self.run}-txn-a")
        t0 = time.perf_counter()
        await p.start()
        check(
            "transactional producer start (InitProducerId)",
            True,
            f"{(time.perf_counter() - t0) * 1000:.0f} ms",
        )
        try:
            await p.begin_transaction()
            f1 = await p.send(self.t_events, b"v-committed-1", key=b"k1")
            f2 = await p.send(self.t_compact, b"v-committed-2", key=b"k1")
            await p.send_offsets_to_transaction({TopicPartition(self.t_input, 0): 5}, self.group)
            await p.commit_transaction()
            m1, m2 = await f1, await f2
            check(
                "commit_transaction",
                True,
                f"events p{m1.partition}@{m1.offset}, compact p{m2.partition}@{m2.offset}",
            )
            # commit_transaction() returns once the coordinator has logged PrepareCommit; the
            # COMMIT markers are written afterwards. Measure how long read_committed lags.
            c = AIOKafkaConsumer(bootstrap_servers=self.bs, group_id=None, isolation_level="read_committed")
            await c.start()
            try:
                waits = []
                tp = TopicPartition(self.t_compact, 0)
                for _ in range(20):
                    await p.begin_transaction()
                    md = await (await p.send(self.t_compact, b"v-lso-probe", key=b"lso"))
                    await p.commit_transaction()
                    t0 = time.perf_counter()
                    polls = 0
                    while (await c.end_offsets([tp]))[tp] <= md.offset:
                        polls += 1
                        if time.perf_counter() - t0 > 5:
                            break
                    waits.append(((time.perf_counter() - t0) * 1000, polls))
                lagged = [w for w, n in waits if n > 0]
                check(
                    "LSO visible after commit_transaction() returns",
                    max(w for w, _ in waits) < 5000,
                    f"{len(lagged)}/20 commits were not yet visible to read_committed right after "
                    f"commit returned; max extra wait {max(w for w, _ in waits):.1f} ms",
                )
            finally:
                await c.stop()
        finally:
            await p.stop()
        ev = await self.read_all(self.t_events, "read_committed", partitions=3)
        cp = await self.read_all(self.t_compact, "read_committed")
        cp = [r for r in cp if r[3] != b"v-lso-probe"]
        check(
            "read_committed consumer sees committed records",
            [v for *_, v in ev] == [b"v-committed-1"] and [v for *_, v in cp] == [b"v-committed-2"],
            f"events {[(p, o, v) for p, o, _, v in ev]}, compact {[(p, o, v) for p, o, _, v in cp]}",
        )
        offs = await self.group_offsets()
        check(
            "group offset committed by the transaction",
            offs.get(TopicPartition(self.t_input, 0)) == 5,
            f"{self.group}: { {f'{tp.topic}:{tp.partition}': o for tp, o in offs.items()} }",
        )

    # ------------------------------------------------------------------ 3
    async def step_abort(self) -> None:
        print("3. transaction abort")
        p = self.producer(f"probe-{self.run}-txn-a")  # same id as step 2: reuse works
        await p.start()
        try:
            await p.begin_transaction()
            fut = await p.send(self.t_other, b"v-aborted", key=b"k2")
            md = await fut
            await p.send_offsets_to_transaction({TopicPartition(self.t_input, 0): 9}, self.group)
            await p.abort_transaction()
            check("abort_transaction", True, f"aborted record was at p{md.partition}@{md.offset}")
            # the producer is usable again after an abort
            await p.begin_transaction()
            await p.send(self.t_other, b"v-after-abort", key=b"k2")
            await p.commit_transaction()
        finally:
            await p.stop()
        rc = await self.read_all(self.t_other, "read_committed")
        ru = await self.read_all(self.t_other, "read_uncommitted")
        check(
            "read_committed does not see the aborted record",
            [v for *_, v in rc] == [b"v-after-abort"],
            f"values {[v for *_, v in rc]}",
        )
        check(
            "read_uncommitted does see it (control)",
            b"v-aborted" in [v for *_, v in ru],
            f"values {[v for *_, v in ru]}, offsets {[o for _, o, _, _ in ru]} (gaps are txn markers)",
        )
        offs = await self.group_offsets()
        check(
            "aborted send_offsets_to_transaction left the group offset unchanged",
            offs.get(TopicPartition(self.t_input, 0)) == 5,
            f"offset {offs.get(TopicPartition(self.t_input, 0))}",
        )

    # ------------------------------------------------------------------ 4
    async def step_fencing(self) -> None:
        print("4. fencing (same transactional_id)")
        tid = f"probe-{self.run}-txn-fence"
        p1 = self.producer(tid)
        await p1.start()
        p2 = self.producer(tid)
        try:
            await p1.begin_transaction()
            await (await p1.send(self.t_events, b"v-zombie-1", key=b"z"))
            t0 = time.perf_counter()
            await asyncio.wait_for(p2.start(), 60)  # InitProducerId bumps the epoch, aborts p1's txn
            check(
                "second producer start() with the same transactional_id",
                True,
                f"{(time.perf_counter() - t0) * 1000:.0f} ms (broker aborts the open txn of the first)",
            )
            # zombie keeps going: one more send, then commit
            send_exc = commit_exc = deliv_exc = None
            fut = None
            try:
                fut = await asyncio.wait_for(p1.send(self.t_events, b"v-zombie-2", key=b"z"), 10)
            except Exception as e:
                send_exc = e
            try:
                await asyncio.wait_for(p1.commit_transaction(), 30)
            except Exception as e:
                commit_exc = e
            if fut is not None:
                try:
                    await asyncio.wait_for(fut, 10)
                except Exception as e:
                    deliv_exc = e
            later_exc = None
            try:
                await asyncio.wait_for(p1.begin_transaction(), 10)
            except Exception as e:
                later_exc = e
            check(
                "first producer's commit fails after fencing",
                commit_exc is not None and not isinstance(commit_exc, asyncio.TimeoutError),
                f"send() after fencing -> {exc_name(send_exc) if send_exc else 'returned a future'}; "
                f"commit_transaction() -> {exc_name(commit_exc) if commit_exc else 'NO EXCEPTION'}; "
                f"that send's delivery future -> {exc_name(deliv_exc) if deliv_exc else 'resolved OK'}; "
                f"begin_transaction() afterwards -> {exc_name(later_exc) if later_exc else 'OK'}",
            )
            self.fence_exc = commit_exc
            # the new producer works
            await p2.begin_transaction()
            await p2.send(self.t_events, b"v-new-owner", key=b"z")
            await p2.commit_transaction()
        finally:
            for p in (p1, p2):
                try:
                    await asyncio.wait_for(p.stop(), 15)
                except Exception as e:
                    print(f"    note: stop() of a producer raised {exc_name(e)}")
        ev = [v for *_, v in await self.read_all(self.t_events, "read_committed", partitions=3)]
        check(
            "zombie records invisible to read_committed, new owner's visible",
            b"v-zombie-1" not in ev and b"v-zombie-2" not in ev and b"v-new-owner" in ev,
            f"values {ev}",
        )

    # ------------------------------------------------------------------ 5
    async def step_metadata_before_commit(self) -> None:
        print("5. RecordMetadata inside an open transaction")
        p = self.producer(f"probe-{self.run}-txn-md")
        await p.start()
        c = AIOKafkaConsumer(bootstrap_servers=self.bs, group_id=None, isolation_level="read_committed")
        await c.start()
        tp = TopicPartition(self.t_other, 0)
        try:
            await p.begin_transaction()
            mds = [await (await p.send(self.t_other, f"v-md-{i}".encode(), key=b"m")) for i in range(3)]
            lso_open = (await c.end_offsets([tp]))[tp]
            check(
                "send future resolves to RecordMetadata before commit",
                all(isinstance(m.offset, int) and m.offset >= 0 for m in mds),
                f"offsets {[m.offset for m in mds]}, read_committed end offset (LSO) while open = {lso_open}",
            )
            check(
                "LSO does not pass the open transaction",
                lso_open <= mds[0].offset,
                f"LSO {lso_open} <= first offset {mds[0].offset}",
            )
            await p.commit_transaction()
            t0 = time.perf_counter()
            lso_after = (await c.end_offsets([tp]))[tp]
            while lso_after <= mds[-1].offset and time.perf_counter() - t0 < 5:
                await asyncio.sleep(0.005)
                lso_after = (await c.end_offsets([tp]))[tp]
            check(
                "after commit the LSO moves past the records",
                lso_after > mds[-1].offset,
                f"LSO {lso_after} after {(time.perf_counter() - t0) * 1000:.1f} ms",
            )
        finally:
            await c.stop()
            await p.stop()
        seen = {(o, v) for _, o, _, v in await self.read_all(self.t_other, "read_committed")}
        check(
            "offsets from the futures are the offsets consumers see",
            all((m.offset, f"v-md-{i}".encode()) in seen for i, m in enumerate(mds)),
        )

    # ------------------------------------------------------------------ 6
    async def step_latency(self) -> None:
        n = self.iterations
        print(f"6. latency of a small transaction ({n} iterations after 30 warm-up)")
        default_override = sender_mod.BACKOFF_OVERRIDE
        runs: list[tuple[int, float | None]] = [(b, None) for b in self.backoffs]
        if self.override is not None:
            runs.append((self.backoffs[-1], self.override))
        for i, (backoff, override) in enumerate(runs):
            # aiokafka retries AddPartitionsToTxn after CONCURRENT_TRANSACTIONS (previous txn's
            # markers not yet written) with this module constant (20 ms) instead of retry_backoff_ms.
            sender_mod.BACKOFF_OVERRIDE = default_override if override is None else override
            try:
                await self.latency_runs(backoff, override, baseline=i == len(runs) - 1)
            finally:
                sender_mod.BACKOFF_OVERRIDE = default_override

    async def latency_runs(self, backoff_ms: int, override: float | None, baseline: bool) -> None:
        n = self.iterations
        p = self.producer(f"probe-{self.run}-txn-lat-{backoff_ms}-{override}", retry_backoff_ms=backoff_ms)
        await p.start()
        tp_in = TopicPartition(self.t_input, 0)

        async def variant(name: str, with_offsets: bool, await_delivery: bool) -> None:
            name = f"{name} [retry_backoff_ms={backoff_ms}" + (
                f", patched BACKOFF_OVERRIDE={override * 1000:g} ms]" if override is not None else "]"
            )
            RETRIES.take()
            lat = []
            for i in range(n + 30):
                t0 = time.perf_counter()
                await p.begin_transaction()
                f1 = await p.send(self.t_events, b"x" * 200, key=f"k{i % 16}".encode())
                f2 = await p.send(self.t_other, b"y" * 200, key=b"k")
                if await_delivery:
                    await f1
                    await f2
                if with_offsets:
                    await p.send_offsets_to_transaction({tp_in: 100 + i}, self.group)
                await p.commit_transaction()
                if i >= 30:
                    lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            q = statistics.quantiles(lat, n=100, method="inclusive")
            retries = RETRIES.take()
            check(
                f"latency {name}",
                True,
                f"median {statistics.median(lat):.2f} ms, p90 {q[89]:.2f}, p99 {q[98]:.2f}, "
                f"max {lat[-1]:.2f}, {n / (sum(lat) / 1000):.0f} txn/s sequential; "
                f"produce retries {retries or 'none'}",
            )

        try:
            await variant("begin+2 sends+send_offsets+commit", True, False)
            await variant("same, awaiting both RecordMetadata before commit", True, True)
            await variant("begin+2 sends+commit (no offsets)", False, False)
        finally:
            await p.stop()
        if not baseline:
            return
        # non-transactional baseline: idempotent producer, acks=all, 2 sends awaited
        p = self.producer(None, idempotent=True, acks="all")
        await p.start()
        try:
            lat = []
            for i in range(n + 30):
                t0 = time.perf_counter()
                f1 = await p.send(self.t_events, b"x" * 200, key=b"k")
                f2 = await p.send(self.t_other, b"y" * 200, key=b"k")
                await f1
                await f2
                if i >= 30:
                    lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            q = statistics.quantiles(lat, n=100, method="inclusive")
            check(
                "baseline: idempotent non-transactional, 2 sends awaited",
                True,
                f"median {statistics.median(lat):.2f} ms, p90 {q[89]:.2f}, p99 {q[98]:.2f}, max {lat[-1]:.2f}",
            )
        finally:
            await p.stop()

    async def cleanup(self, keep: bool) -> None:
        if self.admin is None:
            return
        try:
            if not keep:
                await self.admin.delete_topics(self.topics)
        finally:
            await self.admin.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bootstrap", nargs="?", default=os.environ.get("IOTJOBS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--keep-topics", action="store_true")
    ap.add_argument(
        "--retry-backoff-ms",
        default="100,10",
        help="comma-separated producer retry_backoff_ms values for the latency step (aiokafka default 100)",
    )
    ap.add_argument(
        "--backoff-override-ms",
        type=float,
        default=2.0,
        help="extra latency run with aiokafka.producer.sender.BACKOFF_OVERRIDE monkeypatched "
        "to this many ms (aiokafka: 20); negative = skip",
    )
    args = ap.parse_args()
    backoffs = [int(x) for x in args.retry_backoff_ms.split(",") if x]
    override = args.backoff_override_ms / 1000 if args.backoff_override_ms >= 0 else None
    logging.getLogger("aiokafka").addHandler(RETRIES)
    logging.getLogger("aiokafka").propagate = False  # counted instead of printed

    print(
        f"kafka_txn_probe: bootstrap {args.bootstrap}, aiokafka {aiokafka.__version__}, "
        f"Python {platform.python_version()}"
    )
    probe = Probe(args.bootstrap, args.iterations, backoffs, override)
    t0 = time.perf_counter()
    try:
        for step in (
            probe.step_topics,
            probe.step_commit,
            probe.step_abort,
            probe.step_fencing,
            probe.step_metadata_before_commit,
            probe.step_latency,
        ):
            try:
                await step()
            except Exception as e:
                check(f"{step.__name__} raised", False, exc_name(e))
    finally:
        await probe.cleanup(args.keep_topics)
    other = RETRIES.take()
    if other:
        print(f"  note: aiokafka produce retries outside the latency runs: {other}")
    failed = [r for r in RESULTS if not r[1]]
    print(f"summary: {len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed in {time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
