"""The Kafka record headers of a dead letter: part of the contract, so they live beside the events.

As Kafka Connect's dead-letter queues do, each dead letter names its error code and where
its input was (topic, partition, offset) in headers, with the attempt count; a tool can
route or count dead letters without parsing them. The input record's own headers are
copied onto the dead letter before these.
"""

from __future__ import annotations

PREFIX = "dlq."
ERROR_CODE = PREFIX + "error.code"
ORIGINAL_TOPIC = PREFIX + "original.topic"
ORIGINAL_PARTITION = PREFIX + "original.partition"
ORIGINAL_OFFSET = PREFIX + "original.offset"
ATTEMPTS = PREFIX + "attempts"
# name -> what it holds (values are UTF-8 text)
DEAD_LETTER_HEADERS = {
    ERROR_CODE: "The dead letter's error code, as its `error` field.",
    ORIGINAL_TOPIC: "The input record's topic.",
    ORIGINAL_PARTITION: "The input record's partition, in decimal.",
    ORIGINAL_OFFSET: "The input record's offset, in decimal.",
    ATTEMPTS: "How many times the poster was requested, in decimal.",
}
