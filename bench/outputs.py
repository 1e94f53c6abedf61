"""The bench's Kafka side: input events, and a reader of the output and dead-letter topics."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any

RENDITION = re.compile(r"/t/p/([^/]+)/")


def rendition(poster_url: str) -> str:
    """`w780` from `.../t/p/w780/<file>.jpg`; `other` for URLs not shaped like TMDB's."""
    m = RENDITION.search(poster_url)
    return m.group(1) if m else "other"


class OutputReader(threading.Thread):
    """Reads the output and dead-letter topics from the start; `seen` maps
    source_event_id -> timestamps."""

    def __init__(self, bootstrap: str, topics: list[str]):
        super().__init__(name="output-reader", daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        parts = []
        for topic in topics:
            for p in sorted(self.consumer.partitions_for_topic(topic) or {0}):
                parts.append(TopicPartition(topic, p))
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning()
        self.output_topic = topics[0]
        self.seen: dict[
            str, tuple[int, str]
        ] = {}  # source_event_id -> (record timestamp ms, classified_at)
        self.dead: list[dict[str, Any]] = []
        self.renditions: Counter[str] = (
            Counter()
        )  # of the poster URLs in the outputs: which image was used
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for tp, records in self.consumer.poll(timeout_ms=200).items():
                with self.lock:
                    for r in records:
                        value = json.loads(r.value)
                        if tp.topic == self.output_topic:
                            self.seen[value["source_event_id"]] = (
                                r.timestamp,
                                value["classified_at"],
                            )
                            self.renditions[rendition(value.get("poster_url", ""))] += 1
                        else:
                            self.dead.append(value)
                    self.changed.notify_all()
        self.consumer.close()

    def wait_for(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                missing = sum(1 for i in ids if i not in self.seen)
                if missing == 0:
                    return True
                if len(self.dead) and missing <= len(self.dead):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def event_value(event_id: str, tmdb_id: int) -> bytes:
    return json.dumps(
        {"tmdb_id": tmdb_id, "event_id": event_id, "title": f"Movie {tmdb_id}"}
    ).encode()
