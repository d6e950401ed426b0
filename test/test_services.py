"""Service calls that a dropped answer does not hang (vla_ros/ros/services.py), over real DDS."""
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.task import Future
from std_srvs.srv import SetBool

from vla_ros.ros.services import call_repeatable


def test_an_unanswered_request_is_sent_again_and_the_answer_to_the_repeat_returned(ros):
    """An unanswered request is sent again, and the answer to the repeat is returned.

    The server leaves the first request unanswered, as Fast DDS does when it drops an answer to a
    caller it has not discovered yet.
    """
    calls = []

    async def answer_all_but_the_first(request, response):
        calls.append(request.data)
        if len(calls) == 1:
            await Future()  # never done: this request is never answered
        response.success, response.message = True, f"answer {len(calls)}"
        return response

    # Reentrant: the unanswered first request must not hold the service for the second.
    ros.node.create_service(SetBool, "flaky", answer_all_but_the_first, callback_group=ReentrantCallbackGroup())
    client = ros.node.create_client(SetBool, "flaky")
    ros.spin_until(client.service_is_ready, 10, "the service")
    spin = lambda: ros.executor.spin_once(timeout_sec=0.05)  # noqa: E731
    response = call_repeatable(client, SetBool.Request(data=True), spin, timeout_s=10.0, resend_s=0.5)
    assert response is not None and response.message == "answer 2"
    assert calls == [True, True]


def test_a_service_that_never_answers_gives_none_after_the_timeout(ros):
    client = ros.node.create_client(SetBool, "nobody_serves_this")
    spin = lambda: ros.executor.spin_once(timeout_sec=0.05)  # noqa: E731
    assert call_repeatable(client, SetBool.Request(data=True), spin, timeout_s=1.0, resend_s=0.3) is None
