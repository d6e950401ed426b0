"""Subscriptions a real-time loop reads itself, bypassing the executor.

rclpy's Python executor rebuilds a wait set for every callback it runs: at 500-1000 messages a
second that costs a large share of a core and, worse, a queue of callbacks delays the newest
message by whole periods. A loop that only ever wants the newest message takes it straight from
the subscription at the top of each period instead (the ros2_control pattern of reading state
in the loop, not in callbacks). The executor never sees these subscriptions: their callback group
refuses execution, so they stay out of its wait set.
"""
from __future__ import annotations

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.subscription import Subscription


class _TakenByLoop(CallbackGroup):
    """A callback group the executor never runs (or waits on)."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


def polled_subscription(node: Node, msg_type, topic: str, qos: QoSProfile | int = 1) -> Subscription:
    """A subscription read only by `take_latest` or `take_all` (depth 1 by default: the newest)."""
    return node.create_subscription(msg_type, topic, lambda msg: None, qos, callback_group=_TakenByLoop())


def take_latest(subscription: Subscription):
    """The newest message waiting on `subscription` (older ones are discarded), or None."""
    latest = None
    with subscription.handle:
        while True:
            taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
            if taken is None:
                return latest
            latest = taken[0]


def take_all(subscription: Subscription) -> list:
    """Every message waiting on `subscription`, oldest first (give it a deep queue)."""
    taken = []
    with subscription.handle:
        while True:
            message = subscription.handle.take_message(subscription.msg_type, subscription.raw)
            if message is None:
                return taken
            taken.append(message[0])
