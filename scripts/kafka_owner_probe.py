#!/usr/bin/env python3
"""Check, against a running broker, the Kafka behaviour the single-writer (owner) runtime relies on.

Usage (from the repository root):
    PYTHONPATH=. scripts/kafka_owner_probe.py [BOOTSTRAP] [--latency-n N] [--pause-pid PID] [--keep-topics]

BOOTSTRAP defaults to $IOTJOBS_KAFKA_BOOTSTRAP, else 127.0.0.1:9092. Start a broker first
(scripts/kafka.sh start). Every run uses fresh topic names and deletes its topics at the end (unless
--keep-topics). Only aiokafka's public API is used; no Kafka transactions. Exit status: 0 if every check
passed, 1 otherwise. The producers are configured like iotjobs.runtime.deciders' (idempotent, acks=all,
linger_ms=0, retry_backoff_ms=20, max_request_size=STATE_MAX_BYTES).

Checks:
  1. order: pipelined idempotent appends to an explicit partition land in send order, with increasing
     offsets, and each delivery future resolves to the offset a consumer reads the record at.
  2. fencing by marker: owner A appends, B appends its marker, A (still running) appends more; a
     consumer sees B's marker before A's late records, so the counting rule
     (iotjobs.runtime.eventlog.Counting) rejects them; A's own read-back up to its append offset sees
     the foreign marker first.
  3. read-back latency: send() -> delivery ack, and send() -> record returned by a separate consumer
     long-polling the partition (fetch_max_wait_ms=100, positioned at the end), for N sequential
     appends and for pipelined bursts (p50/p90/p99/max).
  4. partition agreement: aiokafka's DefaultPartitioner == iotjobs.runtime.topics.partition_for for
     random keys and n in (1, 4, 8, 12); keyed sends without a partition land on partition_for(key, n).
  5. size limit: an append over the topic's max.message.bytes fails with MessageSizeTooLargeError,
     one of RECORD_MAX_BYTES passes; also what the same idempotent producer does next.
  6. paused broker (only with --pause-pid PID, the broker JVM): SIGSTOP it mid-burst of pipelined
     appends for --pause-seconds, SIGCONT, and report whether deliveries complete in order or fail,
     and whether a later record lands after an earlier one failed (a gap). Run once per
     --pause-request-timeouts value (the runtime's producer uses 6000 ms by default). A send() that
     raises (the partition's batch stayed full for request_timeout_ms) is reported apart: the caller
     sees it at once, and the probe keeps appending to show that later appends still land.

--checks 1,2,6 runs a subset. aiokafka's warnings are counted and summarised, not printed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import platform
import random
import signal
import statistics
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for iotjobs

from iotjobs.runtime.topics import RECORD_MAX_BYTES, STATE_MAX_BYTES, partition_for

RESULTS: list[tuple[str, bool, str]] = []
SCOPE = "probe"


class AiokafkaLog(logging.Handler):
    """Counts aiokafka's warnings and errors (produce retries by error class) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "retrying" in msg:
            key = "produce retry " + msg.rsplit("Error: ", 1)[-1].strip("<>' ").replace("class '", "")
        else:
            key = "".join("#" if ch.isdigit() else ch for ch in msg.splitlines()[0])[:90]
        self.counts[key] += 1

    def take(self) -> dict[str, int]:
        counts, self.counts = dict(self.counts), Counter()
        return counts


AIOKAFKA_LOG = AiokafkaLog()


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS.append((name, ok, detail))
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def info(text: str) -> None:
    print(f"  [info] {text}", flush=True)


def exc_name(e: BaseException) -> str:
    return f"{type(e).__module__}.{type(e).__qualname__}: {e}"


def pct(values: list[float]) -> str:
    """p50/p90/p99/max of milliseconds."""
    if len(values) < 2:
        return f"n={len(values)}"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:.2f}, p90 {q[89]:.2f}, p99 {q[98]:.2f}, max {max(values):.2f} ms (n={len(values)})"


def increasing(values: list[int]) -> bool:
    """Strictly increasing."""
    return all(a < b for a, b in itertools.pairwise(values))


try:  # the rule every reader of the events topic applies; a local copy if the package cannot be imported
    from iotjobs.runtime.eventlog import Counting

    RULE = "iotjobs.runtime.eventlog.Counting"
except Exception as import_error:  # pragma: no cover - only when iotjobs is broken mid-edit
    RULE = f"a local copy of the rule (iotjobs.runtime.eventlog: {import_error!r})"

    class Counting:  # type: ignore[no-redef]
        def __init__(self) -> None:
            self.tokens: dict[str, str] = {}

        def counts(self, record: dict[str, Any]) -> bool:
            if "marker" in record:
                self.tokens[record["scope"]] = record["marker"]
                return False
            owner = record.get("owner")
            return owner is not None and self.tokens.get(record.get("scope", "")) == owner


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bs: str = args.bootstrap
        run = uuid.uuid4().hex[:8]
        self.run = run
        self.t_order = f"owner-probe-{run}-order"  # 3 partitions, appends go to partition 1
        self.t_fence = f"owner-probe-{run}-fence"
        self.t_latency = f"owner-probe-{run}-latency"
        self.t_keys = {n: f"owner-probe-{run}-keys{n}" for n in (1, 4, 8, 12)}
        self.t_size = f"owner-probe-{run}-size"  # broker default max.message.bytes
        self.t_pause = f"owner-probe-{run}-pause"  # one partition per --pause-request-timeouts value
        self.pause_timeouts = [int(x) for x in args.pause_request_timeouts.split(",") if x]
        self.topics: dict[str, int] = {
            self.t_order: 3,
            self.t_fence: 1,
            self.t_latency: 1,
            **{t: n for n, t in self.t_keys.items()},
            self.t_size: 1,
            self.t_pause: max(1, len(self.pause_timeouts)),
        }
        self.admin: AIOKafkaAdminClient | None = None

    # ------------------------------------------------------------------ helpers
    def producer(self, **kw: Any) -> AIOKafkaProducer:
        """A producer configured like the runtime's (iotjobs.runtime.deciders._new_producer)."""
        config: dict[str, Any] = {
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": 0,
            "retry_backoff_ms": 20,
            "request_timeout_ms": 6000,
            "max_request_size": STATE_MAX_BYTES,
        }
        config.update(kw)
        return AIOKafkaProducer(bootstrap_servers=self.bs, **config)

    def consumer(self, **kw: Any) -> AIOKafkaConsumer:
        config: dict[str, Any] = {
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_partition_fetch_bytes": RECORD_MAX_BYTES * 2,
        }
        config.update(kw)
        return AIOKafkaConsumer(bootstrap_servers=self.bs, **config)

    async def read(self, tp: TopicPartition, start: int = 0, end: int | None = None) -> list[tuple[int, bytes]]:
        """(offset, value) of the records of `tp` from `start` up to `end` (default: the high watermark)."""
        c = self.consumer()
        await c.start()
        try:
            c.assign([tp])
            if end is None:
                end = (await c.end_offsets([tp]))[tp]
            c.seek(tp, start)
            out: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + 30
            while await c.position(tp) < end and time.monotonic() < deadline:
                batch = await c.getmany(tp, timeout_ms=500)
                out += [(r.offset, r.value) for r in batch.get(tp, []) if r.offset < end]
            return out
        finally:
            await c.stop()

    async def end_offset(self, tp: TopicPartition) -> int:
        c = self.consumer()
        await c.start()
        try:
            return int((await c.end_offsets([tp]))[tp])
        finally:
            await c.stop()

    # ------------------------------------------------------------------ 0
    async def setup(self) -> None:
        print("0. topics")
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bs)
        try:
            await admin.start()
        except BaseException:
            await admin.close()
            raise
        self.admin = admin
        resp = await self.admin.create_topics([NewTopic(t, n, 1) for t, n in self.topics.items()])
        errors = [(t[0], t[1]) for t in resp.topic_errors if t[1] != 0]
        check(
            f"create {len(self.topics)} topics",
            not errors,
            f"{', '.join(f'{t}:{n}' for t, n in self.topics.items())}" + (f"; errors {errors}" if errors else ""),
        )
        # wait until the producer side has the partitions' leaders
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = await self.admin.describe_topics(list(self.topics))
            if all(
                t.get("error_code") == 0
                and len(t.get("partitions", [])) == self.topics[t["topic"]]
                and all(q.get("leader", -1) >= 0 for q in t["partitions"])
                for t in meta
            ):
                break
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ 1
    async def step_order(self) -> None:
        n = self.args.order_count
        print(f"1. order of {n} pipelined idempotent appends to an explicit partition")
        tp = TopicPartition(self.t_order, 1)
        p = self.producer()
        await p.start()
        try:
            t0 = time.perf_counter()
            futs = []
            for i in range(n):
                # keys that hash anywhere: the explicit partition wins
                futs.append(
                    await p.send(self.t_order, f"order-{i:06d}".encode(), key=f"k{i % 97}".encode(), partition=1)
                )
            t_enqueued = time.perf_counter()
            results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 60)
            t_done = time.perf_counter()
        finally:
            await p.stop()
        failed = [r for r in results if isinstance(r, BaseException)]
        mds = [r for r in results if not isinstance(r, BaseException)]
        offsets = [m.offset for m in mds]
        check(
            "every delivery succeeded, on partition 1",
            not failed and all(m.partition == 1 for m in mds),
            f"{len(mds)}/{n} ok; sends enqueued in {(t_enqueued - t0) * 1000:.0f} ms, all acked after "
            f"{(t_done - t0) * 1000:.0f} ms ({n / (t_done - t0):.0f} records/s)"
            + (f"; failures {Counter(type(e).__name__ for e in failed)}" if failed else ""),
        )
        check(
            "delivery offsets increase in send order",
            increasing(offsets) and len(offsets) == n,
            f"offsets {offsets[0] if offsets else '-'}..{offsets[-1] if offsets else '-'}, contiguous: "
            f"{offsets == list(range(offsets[0], offsets[0] + n)) if offsets else False}",
        )
        log = await self.read(tp)
        expected = [(m.offset, f"order-{i:06d}".encode()) for i, m in enumerate(mds)]
        others = [await self.end_offset(TopicPartition(self.t_order, q)) for q in (0, 2)]
        check(
            "a consumer reads them in send order at the offsets the futures gave",
            log == expected and others == [0, 0],
            f"read {len(log)} records; first mismatch "
            f"{next(((a, b) for a, b in zip(log, expected, strict=False) if a != b), None)}; "
            f"partitions 0 and 2 end offsets {others}",
        )

    # ------------------------------------------------------------------ 2
    async def step_fencing(self) -> None:
        print(f"2. fencing by marker (no transactions); counting rule: {RULE}")
        tp = TopicPartition(self.t_fence, 0)
        token_a, token_b = f"A-{uuid.uuid4().hex[:8]}", f"B-{uuid.uuid4().hex[:8]}"
        a, b = self.producer(), self.producer()
        await a.start()
        await b.start()
        tail_a = self.consumer(fetch_max_wait_ms=100)  # A's own read-back consumer
        await tail_a.start()
        tail_a.assign([tp])
        appended: dict[str, int] = {}  # label -> offset

        async def append(prod: AIOKafkaProducer, label: str, record: dict[str, Any], key: bytes) -> int:
            md = await (await prod.send(self.t_fence, json.dumps(record).encode(), key=key, partition=0))
            appended[label] = int(md.offset)
            return appended[label]

        def event(owner: str, seq: int) -> dict[str, Any]:
            return {"type": "ProbeEvent", "key": "thing/probe", "seq": seq, "scope": SCOPE, "owner": owner}

        async def read_back(start: int, upto: int) -> tuple[list[dict[str, Any]], float]:
            """A's read-back: the records from `start` up to and including its own append at `upto`."""
            t0 = time.perf_counter()
            tail_a.seek(tp, start)
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 10
            while await tail_a.position(tp) <= upto and time.monotonic() < deadline:
                batch = await tail_a.getmany(tp, timeout_ms=500)
                seen += [json.loads(r.value) | {"_offset": r.offset} for r in batch.get(tp, []) if r.offset <= upto]
            return seen, (time.perf_counter() - t0) * 1000

        def foreign_marker(seen: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((r for r in seen if "marker" in r and r["marker"] != token_a), None)

        try:
            marker_a = await append(a, "marker A", {"marker": token_a, "scope": SCOPE, "epoch": 1}, b"__marker__")
            for s in (1, 2, 3):
                await append(a, f"A seq {s}", event(token_a, s), b"thing/probe")
            ok_seen, ok_ms = await read_back(marker_a, appended["A seq 3"])
            await append(b, "marker B", {"marker": token_b, "scope": SCOPE, "epoch": 2}, b"__marker__")
            late_errors = []
            for s in (4, 5):  # A is still running and does not know about B
                try:
                    await append(a, f"A seq {s} (late)", event(token_a, s), b"thing/probe")
                except KafkaError as e:
                    late_errors.append(exc_name(e))
            late_seen, late_ms = await read_back(marker_a, appended.get("A seq 4 (late)", -1))
            await append(b, "B seq 4", event(token_b, 4), b"thing/probe")
        finally:
            await tail_a.stop()
            await a.stop()
            await b.stop()
        check(
            "A's late appends succeed at the Kafka level (nothing fences an idempotent producer)",
            not late_errors and "A seq 5 (late)" in appended,
            f"appended {appended}" + (f"; errors {late_errors}" if late_errors else ""),
        )
        log = [(o, json.loads(v)) for o, v in await self.read(tp)]
        order = [f"marker {r['marker'][0]}" if "marker" in r else f"{r['owner'][0]} seq {r['seq']}" for _, r in log]
        rule = Counting()
        counted = [f"{r['owner'][0]} seq {r['seq']}" for _, r in log if rule.counts(r)]
        check(
            "a consumer from the start sees B's marker before A's late records",
            appended["marker B"] < appended["A seq 4 (late)"] < appended["A seq 5 (late)"]
            and order == ["marker A", "A seq 1", "A seq 2", "A seq 3", "marker B", "A seq 4", "A seq 5", "B seq 4"],
            f"log {order}",
        )
        check(
            "the counting rule rejects A's late records and keeps B's",
            counted == ["A seq 1", "A seq 2", "A seq 3", "B seq 4"],
            f"counted {counted}",
        )
        check(
            "A's read-back up to its own late append sees the foreign marker before it",
            (fm := foreign_marker(late_seen)) is not None and fm["_offset"] < appended["A seq 4 (late)"],
            f"read {len(late_seen)} records from its marker @{marker_a} up to @{appended['A seq 4 (late)']} in "
            f"{late_ms:.1f} ms, foreign marker at @{fm['_offset'] if fm else None} "
            f"(epoch {fm['epoch'] if fm else None})",
        )
        check(
            "control: A's read-back of an append before B's marker sees no foreign marker",
            foreign_marker(ok_seen) is None and len(ok_seen) == 4,
            f"read {len(ok_seen)} records up to @{appended['A seq 3']} in {ok_ms:.1f} ms",
        )

    # ------------------------------------------------------------------ 3
    async def step_latency(self) -> None:
        n, bursts, size = self.args.latency_n, self.args.bursts, self.args.burst_size
        warm = 20
        print(f"3. read-back latency: {n} sequential appends (+{warm} warm-up) and {bursts} pipelined bursts of {size}")
        tp = TopicPartition(self.t_latency, 0)
        p = self.producer()
        await p.start()
        tail = self.consumer(fetch_max_wait_ms=100)
        await tail.start()
        tail.assign([tp])
        await tail.seek_to_end(tp)
        await tail.position(tp)  # positioned at the end before the first append
        seen: dict[bytes, float] = {}
        waiting: dict[bytes, asyncio.Future[float]] = {}

        async def run_tail() -> None:
            while True:
                batch = await tail.getmany(tp, timeout_ms=1000)
                now = time.perf_counter()
                for r in batch.get(tp, []):
                    seen[r.value] = now
                    fut = waiting.pop(r.value, None)
                    if fut is not None and not fut.done():
                        fut.set_result(now)

        def seen_at(value: bytes) -> Awaitable[float]:
            if value in seen:
                done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                done.set_result(seen[value])
                return done
            return waiting.setdefault(value, asyncio.get_running_loop().create_future())

        tail_task = asyncio.create_task(run_tail())
        try:
            ack, back = [], []
            for i in range(n + warm):
                value = f"seq-{i:06d}".encode()
                t0 = time.perf_counter()
                md = await (await p.send(self.t_latency, value, key=b"thing/probe", partition=0))
                t_ack = time.perf_counter()
                t_seen = await asyncio.wait_for(seen_at(value), 10)
                if i >= warm:
                    ack.append((t_ack - t0) * 1000)
                    back.append((t_seen - t0) * 1000)
                del md
            check("sequential: send -> delivery ack", True, pct(ack))
            check("sequential: send -> returned by the long-polling consumer", True, pct(back))
            check(
                "sequential: read-back after the ack",
                True,
                pct([b - a for a, b in zip(ack, back, strict=True)]),
            )
            b_ack, b_back, b_total = [], [], []
            for j in range(bursts):
                values = [f"burst-{j:03d}-{i:04d}".encode() for i in range(size)]
                starts, futs = [], []
                t_burst = time.perf_counter()
                for v in values:
                    starts.append(time.perf_counter())
                    futs.append(await p.send(self.t_latency, v, key=b"thing/probe", partition=0))
                acked: list[float] = [0.0] * size
                for i, f in enumerate(futs):
                    f.add_done_callback(lambda _f, i=i, acked=acked: acked.__setitem__(i, time.perf_counter()))
                await asyncio.wait_for(asyncio.gather(*futs), 30)
                seen_times = await asyncio.wait_for(asyncio.gather(*(seen_at(v) for v in values)), 30)
                b_ack += [(a - s) * 1000 for a, s in zip(acked, starts, strict=True)]
                b_back += [(t - s) * 1000 for t, s in zip(seen_times, starts, strict=True)]
                b_total.append((max(seen_times) - t_burst) * 1000)
            check(f"bursts of {size}: send -> delivery ack (per record)", True, pct(b_ack))
            check(f"bursts of {size}: send -> returned by the consumer (per record)", True, pct(b_back))
            check(f"bursts of {size}: first send -> last record read back (per burst)", True, pct(b_total))
        finally:
            tail_task.cancel()
            await asyncio.gather(tail_task, return_exceptions=True)
            await tail.stop()
            await p.stop()
        retries = AIOKAFKA_LOG.take()
        if retries:
            info(f"aiokafka warnings during the latency runs: {retries}")

    # ------------------------------------------------------------------ 4
    async def step_partitions(self) -> None:
        m = self.args.keys
        print(f"4. partition agreement: DefaultPartitioner vs iotjobs.runtime.topics.partition_for ({m} keys per n)")
        rnd = random.Random(self.run)
        alphabet = string.ascii_letters + string.digits + "-_:/.é✓𝄞"

        def random_key() -> str:
            kind = rnd.randrange(4)
            if kind == 0:
                return f"thing/{uuid.UUID(int=rnd.getrandbits(128))}"
            if kind == 1:
                return f"job/{''.join(rnd.choices(string.ascii_letters + string.digits + '-_', k=rnd.randint(1, 64)))}"
            if kind == 2:
                return "".join(rnd.choices(alphabet, k=rnd.randint(0, 40)))
            return f"thing/t{rnd.randrange(100_000)}"

        keys = [random_key() for _ in range(m)] + ["", "thing/", "a", "thing/é"]
        partitioner = DefaultPartitioner()
        for n in (1, 4, 8, 12):
            parts = list(range(n))
            mismatches = [k for k in keys if partitioner(k.encode(), parts, parts) != partition_for(k, n)]
            spread = Counter(partition_for(k, n) for k in keys)
            check(
                f"n={n}: DefaultPartitioner(key) == partition_for(key, n)",
                not mismatches,
                f"{len(keys) - len(mismatches)}/{len(keys)} agree; per partition {[spread[q] for q in parts]}"
                + (f"; e.g. {mismatches[:3]!r}" if mismatches else ""),
            )
        sample = keys[: self.args.keyed_sends]
        p = self.producer()
        await p.start()
        try:
            for n, topic in self.t_keys.items():
                futs = [await p.send(topic, b"k", key=k.encode()) for k in sample]
                mds = await asyncio.wait_for(asyncio.gather(*futs), 60)
                wrong = [
                    (k, md.partition) for k, md in zip(sample, mds, strict=True) if md.partition != partition_for(k, n)
                ]
                check(
                    f"n={n}: keyed sends without a partition land on partition_for(key, n)",
                    not wrong,
                    f"{len(sample) - len(wrong)}/{len(sample)} on the expected partition"
                    + (f"; e.g. {wrong[:3]!r}" if wrong else ""),
                )
        finally:
            await p.stop()

    # ------------------------------------------------------------------ 5
    async def step_size(self) -> None:
        print(f"5. record size limit (RECORD_MAX_BYTES = {RECORD_MAX_BYTES})")
        assert self.admin
        cfg = await self.admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, self.t_size, {"max.message.bytes": None})]
        )
        limit = None
        for r in cfg:
            for res in r.resources:
                for entry in res[4]:
                    if entry[0] == "max.message.bytes":
                        limit = int(entry[1])
        check(
            "the topic's max.message.bytes leaves room for a RECORD_MAX_BYTES value",
            limit is not None and limit > RECORD_MAX_BYTES,
            f"max.message.bytes = {limit} (broker default), margin {limit - RECORD_MAX_BYTES if limit else '?'} bytes",
        )
        limit = limit or 1048588
        p = self.producer()  # max_request_size=STATE_MAX_BYTES: the broker, not the client, enforces the limit
        await p.start()
        outcomes: dict[str, str] = {}

        async def attempt(label: str, prod: AIOKafkaProducer, size: int) -> BaseException | None:
            t0 = time.perf_counter()
            try:
                md = await asyncio.wait_for(
                    await prod.send(self.t_size, b"x" * size, key=b"thing/probe", partition=0), 30
                )
            except Exception as e:
                outcomes[label] = f"{type(e).__name__} after {(time.perf_counter() - t0) * 1000:.0f} ms"
                return e
            outcomes[label] = f"ok @{md.offset}"
            return None

        try:
            small = await attempt("1 KB", p, 1024)
            at_limit = await attempt(f"{RECORD_MAX_BYTES} B", p, RECORD_MAX_BYTES)
            over = await attempt(f"{limit + 1} B", p, limit + 1)
            check(
                "appends up to RECORD_MAX_BYTES pass",
                small is None and at_limit is None,
                f"1 KB -> {outcomes['1 KB']}, {RECORD_MAX_BYTES} B -> {outcomes[f'{RECORD_MAX_BYTES} B']}",
            )
            check(
                "an append over max.message.bytes fails with MessageSizeTooLargeError (from the broker)",
                isinstance(over, MessageSizeTooLargeError),
                f"{limit + 1} B -> {exc_name(over) if over else 'succeeded'}",
            )
            after = [await attempt(f"1 KB after the rejection #{k}", p, 1024) for k in (1, 2)]
            info(
                "the same idempotent producer's next two appends to that partition after the broker's rejection -> "
                + "; ".join(
                    exc_name(e) if e else outcomes[f"1 KB after the rejection #{k}"]
                    for k, e in zip((1, 2), after, strict=True)
                )
                + " (the runtime renews its producer after a failed append)"
            )
        finally:
            await asyncio.wait_for(p.stop(), 10)
        fresh = self.producer()
        await fresh.start()
        try:
            again = await attempt("1 KB, new producer", fresh, 1024)
            check("a new producer appends to that partition again", again is None, outcomes["1 KB, new producer"])
        finally:
            await fresh.stop()
        client_side = AIOKafkaProducer(bootstrap_servers=self.bs, enable_idempotence=True, acks="all")
        await client_side.start()
        try:
            try:
                await client_side.send(self.t_size, b"x" * (limit + 1), partition=0)
                raised: BaseException | None = None
            except Exception as e:
                raised = e
            info(
                f"with aiokafka's default max_request_size (1048576) the same append fails in send() itself: "
                f"{exc_name(raised) if raised else 'no error'}"
            )
        finally:
            await client_side.stop()
        AIOKAFKA_LOG.take()

    # ------------------------------------------------------------------ 6
    async def step_pause(self) -> None:
        pid = self.args.pause_pid
        if pid is None:
            print("6. paused broker: skipped (give --pause-pid PID of the broker JVM)")
            return
        secs = self.args.pause_seconds
        print(f"6. pipelined appends while the broker (pid {pid}) is paused for {secs:g} s")
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError as e:
            check("--pause-pid names a running process", False, exc_name(e))
            return
        if "kafka" not in cmdline.lower():
            check("--pause-pid is a Kafka broker", False, f"refusing to stop pid {pid}: {cmdline[:120]!r}")
            return
        for partition, timeout_ms in enumerate(self.pause_timeouts):
            await self.pause_run(pid, secs, partition, timeout_ms)

    async def pause_run(self, pid: int, secs: float, partition: int, timeout_ms: int) -> None:
        label = f"request_timeout_ms={timeout_ms}"
        tp = TopicPartition(self.t_pause, partition)
        interval, before, after = self.args.pause_interval_ms / 1000, 1.5, 1.5
        pad = b"." * max(0, self.args.pause_record_bytes - 20)
        p = self.producer(request_timeout_ms=timeout_ms)
        await p.start()
        # warm the connection, so the first appends are not slowed by metadata
        await (await p.send(self.t_pause, b"warm-up", partition=partition))
        AIOKAFKA_LOG.take()
        futs: dict[int, asyncio.Future[Any]] = {}  # attempt -> delivery future (sends that did not raise)
        sent_at: dict[int, float] = {}
        acked: dict[int, float] = {}
        send_errors: list[tuple[int, BaseException, float]] = []  # attempts whose send() raised
        blocked: list[float] = []
        marks: dict[str, float] = {}
        in_pause = 0

        async def pauser() -> None:
            await asyncio.sleep(before)
            marks["stop"] = time.perf_counter()
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(secs)
            finally:
                os.kill(pid, signal.SIGCONT)
                marks["cont"] = time.perf_counter()

        pause_task = asyncio.create_task(pauser())
        t_start = time.perf_counter()
        attempts = 0
        try:
            while time.perf_counter() - t_start < before + secs + after:
                i = attempts
                attempts += 1
                value = f"pause-{partition}-{i:06d}-".encode() + pad
                t0 = time.perf_counter()
                if "stop" in marks and "cont" not in marks:
                    in_pause += 1
                try:
                    fut = await p.send(self.t_pause, value, key=b"thing/probe", partition=partition)
                except Exception as e:
                    # Visible to the caller at once; the runtime stops appending to the partition here and
                    # renews its producer. The probe goes on, to show what a later append does.
                    send_errors.append((i, e, (time.perf_counter() - t0) * 1000))
                    continue
                blocked.append((time.perf_counter() - t0) * 1000)
                sent_at[i] = t0
                fut.add_done_callback(lambda _f, i=i: acked.__setitem__(i, time.perf_counter()))
                futs[i] = fut
                await asyncio.sleep(interval)
            await pause_task  # always resumes the broker
            if futs:
                await asyncio.wait(futs.values(), timeout=max(60.0, 3 * timeout_ms / 1000))
        finally:
            if not pause_task.done():
                pause_task.cancel()
                await asyncio.gather(pause_task, return_exceptions=True)
            try:
                await asyncio.wait_for(p.stop(), 30)
            except Exception as e:
                info(f"{label}: producer stop: {exc_name(e)}")
        ok: dict[int, int] = {}  # attempt -> offset
        failed: dict[int, BaseException] = {}
        pending: list[int] = []
        for i, f in futs.items():
            if not f.done():
                pending.append(i)
            elif f.cancelled():
                failed[i] = asyncio.CancelledError()
            elif f.exception() is not None:
                failed[i] = f.exception()  # type: ignore[assignment]
            else:
                ok[i] = f.result().offset
        prefix = f"pause-{partition}-".encode()
        logged = [(o, int(v[len(prefix) :].split(b"-", 1)[0])) for o, v in await self.read(tp) if v.startswith(prefix)]
        log_is = [i for _, i in logged]
        in_log = set(log_is)
        at_offset = dict(logged)
        cont = marks.get("cont", 0.0)
        backlog = [i for i in futs if sent_at[i] < cont]
        drained = max((acked[i] for i in backlog if i in acked), default=cont) - cont
        latency = [(acked[i] - sent_at[i]) * 1000 for i in acked]
        raised = Counter(type(e).__name__ for _, e, _ in send_errors)
        info(
            f"{label}: {attempts} appends of {len(pad) + 20} B every {interval * 1000:g} ms, {in_pause} attempted "
            f"while paused; send() blocked {pct(blocked)}; "
            + (
                f"send() raised {dict(raised)} for {len(send_errors)} appends (#{send_errors[0][0]}.."
                f"#{send_errors[-1][0]}, after {send_errors[0][2]:.0f} ms blocked)"
                if send_errors
                else "no send() raised"
            )
        )
        failures = f" {dict(Counter(type(e).__name__ for e in failed.values()))}" if failed else ""
        info(
            f"{label}: deliveries ok {len(ok)}, failed {len(failed)}{failures}, pending after the wait "
            f"{len(pending)}; send -> ack {pct(latency)}; the {len(backlog)} appends sent before SIGCONT were "
            f"all acked {drained * 1000:.0f} ms after it"
        )
        warnings = AIOKAFKA_LOG.take()
        if warnings:
            info(f"{label}: aiokafka warnings {warnings}")
        check(
            f"{label}: the log holds the appends in send order, without duplicates",
            increasing(log_is) and len(in_log) == len(log_is),
            f"{len(log_is)} records in the log, duplicates {len(log_is) - len(in_log)}, "
            f"first out-of-order {next(((a, b) for a, b in itertools.pairwise(log_is) if a >= b), None)}",
        )
        disagree = [i for i, off in ok.items() if at_offset.get(off) != i]
        landed_failed = [i for i in failed if i in in_log]
        landed_raised = [i for i, _, _ in send_errors if i in in_log]
        check(
            f"{label}: every outcome agrees with the log (ok -> at its offset; failed or raised -> absent)",
            not disagree and not landed_failed and not landed_raised and increasing(list(ok.values())),
            f"ok but elsewhere {disagree[:5]}, delivery failed but landed {landed_failed[:5]}, "
            f"send() raised but landed {landed_raised[:5]}",
        )
        last = max(log_is, default=-1)
        gaps = sorted(i for i in set(futs) - in_log if i < last)
        check(
            f"{label}: no gap after a failed delivery (no later record lands after one whose delivery failed)",
            not gaps,
            f"deliveries that failed or are pending {len(futs) - len(ok)}, followed by a later landed record "
            f"{len(gaps)}" + (f", e.g. #{gaps[0]} missing but #{last} landed" if gaps else ""),
        )
        if send_errors:
            later = [i for i in log_is if i > send_errors[0][0]]
            info(
                f"{label}: after the first send() that raised (#{send_errors[0][0]}), {len(later)} later appends "
                "of the same producer still landed: a raised send() leaves a hole the caller must act on (the "
                "runtime stops appending to the partition and retakes it)"
            )

    async def cleanup(self, keep: bool) -> None:
        if self.admin is None:
            return
        try:
            if not keep:
                await self.admin.delete_topics(list(self.topics))
        finally:
            await self.admin.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bootstrap", nargs="?", default=os.environ.get("IOTJOBS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--order-count", type=int, default=2000, help="pipelined appends in check 1 (default 2000)")
    ap.add_argument("--latency-n", type=int, default=500, help="sequential appends in check 3 (default 500)")
    ap.add_argument("--bursts", type=int, default=20, help="pipelined bursts in check 3 (default 20)")
    ap.add_argument("--burst-size", type=int, default=50, help="appends per burst in check 3 (default 50)")
    ap.add_argument("--keys", type=int, default=20000, help="random keys per partition count in check 4")
    ap.add_argument("--keyed-sends", type=int, default=500, help="keyed sends per topic in check 4")
    ap.add_argument("--pause-pid", type=int, help="pid of the broker JVM to SIGSTOP in check 6 (else skipped)")
    ap.add_argument("--pause-seconds", type=float, default=3.0)
    ap.add_argument("--pause-interval-ms", type=float, default=5.0, help="time between appends in check 6")
    ap.add_argument("--pause-record-bytes", type=int, default=200, help="value size of the appends in check 6")
    ap.add_argument(
        "--pause-request-timeouts",
        default="6000,1000",
        help="producer request_timeout_ms values, one run each in check 6 (runtime default 6000)",
    )
    ap.add_argument("--checks", default="1,2,3,4,5,6", help="which checks to run (default all)")
    ap.add_argument("--keep-topics", action="store_true")
    args = ap.parse_args()
    logging.getLogger("aiokafka").addHandler(AIOKAFKA_LOG)
    logging.getLogger("aiokafka").propagate = False  # counted instead of printed

    print(
        f"kafka_owner_probe: bootstrap {args.bootstrap}, aiokafka {aiokafka.__version__}, "
        f"Python {platform.python_version()}"
    )
    probe = Probe(args)
    t0 = time.perf_counter()
    wanted = {int(x) for x in args.checks.split(",") if x}
    checks = [probe.step_order, probe.step_fencing, probe.step_latency, probe.step_partitions, probe.step_size]
    steps: list[Callable[[], Awaitable[None]]] = [probe.setup]
    steps += [step for k, step in enumerate([*checks, probe.step_pause], 1) if k in wanted]
    try:
        for step in steps:
            try:
                await step()
            except Exception as e:
                check(f"{step.__name__} raised", False, exc_name(e))
                if step == probe.setup:
                    break
    finally:
        await probe.cleanup(args.keep_topics)
    other = AIOKAFKA_LOG.take()
    if other:
        print(f"  note: aiokafka warnings outside the reported runs: {other}")
    failed = [r for r in RESULTS if not r[1]]
    print(f"summary: {len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed in {time.perf_counter() - t0:.1f} s")
    for name, _, detail in failed:
        print(f"  failed: {name}: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
