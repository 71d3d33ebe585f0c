"""The role consumers' assignment strategy (workers.service.clients)."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.structs import TopicPartition

from workers.service.clients import assignors


def test_each_consumer_announces_only_its_own_last_assignment() -> None:
    """aiokafka's sticky assignor keeps the last assignment on its class: two role
    consumers of one process sharing it would each claim the other's partitions at the
    next rebalance, and the group would move them."""
    (router,), (owner,) = assignors(), assignors()
    router.on_assignment(ConsumerProtocolMemberAssignment(0, [("input", [0, 2])], b""))
    owner.on_assignment(ConsumerProtocolMemberAssignment(0, [("sequenced", [0])], b""))
    assert router.member_assignment == [TopicPartition("input", 0), TopicPartition("input", 2)]
    assert owner.member_assignment == [TopicPartition("sequenced", 0)]
    claimed = owner.parse_member_metadata(owner.metadata(["sequenced"]))
    assert claimed.partitions == [TopicPartition("sequenced", 0)]

