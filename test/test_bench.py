"""The benchmarks: what they report, in what shape (no timing assertions)."""
import json
import math
import runpy
from pathlib import Path

import pytest

from harness import console_script

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def policy_bench():
    return runpy.run_path(str(BENCH / "policy.py"), run_name="bench_policy")


def test_policy_bench_image_conversions_report_every_operation_per_resolution(policy_bench):
    """Each conversion has finite p50 <= p99 in microseconds at 224x224 and 640x480, and the report is JSON."""
    report = json.loads(json.dumps(policy_bench["image_conversions"](iterations=3)))
    assert report["iterations"] == 3
    assert set(report["resolutions"]) == {"224x224", "640x480"}
    operations = {"from_image_msg_rgb8", "from_image_msg_bgr8", "to_image_msg",
                  "resize_to_224x224", "from_compressed_msg_jpeg"}
    for label, results in report["resolutions"].items():
        assert set(results) == operations, label
        for operation, timing in results.items():
            assert set(timing) == {"p50_us", "p99_us"}, (label, operation)
            assert math.isfinite(timing["p99_us"]) and 0 < timing["p50_us"] <= timing["p99_us"], (label, operation)
    assert set(report["jpeg_bytes"]) == {"224x224", "640x480"}


def test_policy_bench_frames_are_not_trivially_compressible(policy_bench):
    """Textured frames keep jpeg at quality 90 above a tenth of their raw size (a plain gradient: under 3%)."""
    report = policy_bench["image_conversions"](iterations=1)
    for label, size in report["jpeg_bytes"].items():
        width, height = map(int, label.split("x"))
        assert size > width * height * 3 / 10, label


def test_policy_bench_textured_frames_differ_and_have_the_camera_shape(policy_bench):
    """Frames are (H, W, 3) uint8 and differ from one to the next (the camera stream is not one repeated image)."""
    frames = policy_bench["textured_frames"](224, 224, 3)
    assert all(frame.shape == (224, 224, 3) and frame.dtype.name == "uint8" for frame in frames)
    assert not (frames[0] == frames[1]).all() and not (frames[1] == frames[2]).all()


def test_policy_bench_with_the_builtin_model_reports_inference_and_both_seams(ros, tmp_path):
    """The node runs the shipped model: inference percentiles, chunk length and denoising steps.

    The seam measurement covers guided and unguided chunks over the same episodes.
    """
    out = tmp_path / "policy.json"
    run = ros.start([console_script("vla-ros"), "bench", "policy", "--backend", "builtin", "--seconds", "3",
                     "--warmup", "1", "--request-rate", "10", "--iterations", "2", "--seams", "1", "--json", str(out)],
                    name="bench-policy")
    assert run.popen.wait(timeout=600) == 0, run.output()
    report = json.loads(out.read_text())
    model = report["model"]
    assert report["backend"] == "builtin" and model["chunk_length"] >= 1 and model["denoising_steps"] >= 1
    assert 0 < model["inference_ms"]["p50"] <= model["inference_ms"]["p95"]
    seams = model["seams"]
    assert seams["guided"]["seams"] == seams["unguided"]["seams"] > 0
    assert seams["guided"]["mean_rad"] < seams["unguided"]["mean_rad"]


def test_policy_bench_feeds_a_mobile_base_odometry_so_its_node_sends_chunks(ros, tmp_path):
    """A body with a base needs odom for its state: without it the node never sends a chunk to measure."""
    out = tmp_path / "policy.json"
    run = ros.start([console_script("vla-ros"), "bench", "policy", "--embodiment", "mobile_manipulator", "--seconds",
                     "2", "--warmup", "1", "--iterations", "1", "--json", str(out)], name="bench-policy")
    assert run.popen.wait(timeout=600) == 0, run.output()
    report = json.loads(out.read_text())
    assert report["node"]["chunks_per_s"] > 0, report["node"]


def test_generalist_bench_shares_data_and_steps_as_the_study_says(tmp_path):
    """3% of 450 shipped-body episodes is 14 new ones; specialists get the generalist's batches of their body."""
    bench = runpy.run_path(str(BENCH / "generalist.py"), run_name="bench_generalist")
    assert bench["share_episodes"](0.03, 450) == 14
    assert 14 / (450 + 14) == pytest.approx(0.03, abs=0.001)
    assert bench["steps_per_body"](3000, {"arm7": 100, "mobile_manipulator": 100, "humanoid_upper": 200}) == {
        "arm7": 750, "mobile_manipulator": 750, "humanoid_upper": 1500}
    cells = [{"model": model, "body": body, "task": "reach", "successes": 30, "episodes": 40, "success_rate": 0.75,
              "ci95": [0.6, 0.86], "inference_p50_ms": 33.0}
             for model, body in (("generalist", "arm7"), ("specialist-arm7", "arm7"), ("generalist+new", "ur5e"),
                                 ("generalist+new-ee", "ur5e"), ("specialist-new-share", "ur5e"),
                                 ("specialist-new-full", "ur5e"))]
    bench["chart"](tmp_path / "chart.png", cells)
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
