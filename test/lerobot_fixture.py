"""Build a tiny ACT checkpoint for arm7 and answer one observation with it; run by LeRobot's python.

`python test/lerobot_fixture.py OUT` writes OUT/checkpoint (LeRobot's save_pretrained of the
policy and both processors, plus a train_config.json naming OUT/dataset, whose meta/info.json
gives fps 10 and the state and action names in the reverse of the layout's order) and
OUT/answers.npz: the observation, the `lerobot` backend's chunk and dt for it, the chunk LeRobot
gives for the same inputs assembled by hand, and the backend's errors for checkpoints the
embodiment cannot fill. test_lerobot_policy.py compares them with what the main venv gets.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors

from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.media import resize
from vla_ros.policy import Observation, PolicyError, make_policy

FPS = 10
IMAGE_SIZE = 64
INSTRUCTION = "put the red cube in the bin"


def build(out: Path, names: list[str], home: np.ndarray) -> Path:
    """The checkpoint: ACT as small as it gets, normalisation statistics of a plausible dataset."""
    torch.manual_seed(0)
    images = [f"observation.images.{camera}" for camera in ("front", "wrist")]
    config = ACTConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (len(names),)),
                        **{key: PolicyFeature(FeatureType.VISUAL, (3, IMAGE_SIZE, IMAGE_SIZE)) for key in images}},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (len(names),))},
        device="cpu", dim_model=64, n_heads=2, dim_feedforward=128, chunk_size=8, n_action_steps=8,
        n_encoder_layers=1, n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None)
    joints = {"mean": torch.from_numpy(home), "std": torch.full((len(names),), 0.3)}
    pixels = {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
              "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)}
    stats = {"observation.state": joints, "action": joints, **{key: pixels for key in images}}
    checkpoint, dataset = out / "checkpoint", out / "dataset"
    ACTPolicy(config).save_pretrained(checkpoint)
    for processor in make_pre_post_processors(config, dataset_stats=stats):
        processor.save_pretrained(checkpoint)
    features = {key: {"dtype": "float32", "shape": [len(names)], "names": names}
                for key in ("observation.state", "action")}
    (dataset / "meta").mkdir(parents=True)
    (dataset / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": FPS,
                                                             "features": features}))
    (checkpoint / "train_config.json").write_text(json.dumps({"dataset": {"repo_id": "vla_ros/arm7_tiny",
                                                                          "root": str(dataset)}}))
    return checkpoint


def by_hand(checkpoint: Path, observation: Observation, order: np.ndarray) -> np.ndarray:
    """LeRobot's chunk for `observation`, its inputs assembled here: state in the checkpoint's order."""
    from lerobot.configs.policies import PreTrainedConfig

    config = PreTrainedConfig.from_pretrained(checkpoint)
    policy = ACTPolicy.from_pretrained(checkpoint, config=config)
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=str(checkpoint))
    batch = {"observation.state": torch.from_numpy(observation.state[order])[None], "task": observation.instruction}
    for camera, image in observation.images.items():
        pixels = torch.from_numpy(np.ascontiguousarray(resize(image, IMAGE_SIZE, IMAGE_SIZE)))
        batch[f"observation.images.{camera}"] = pixels.permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        chunk = postprocessor(policy.predict_action_chunk(preprocessor(batch))[0])
    return chunk.numpy()[:, np.argsort(order)]


def main(out: Path) -> None:
    arm7 = load_embodiment("arm7")
    io = EmbodimentIO(arm7)
    order = np.arange(io.size)[::-1].copy()  # the checkpoint's entries: the layout's, reversed
    checkpoint = build(out, [io.names[i] for i in order], io.home[order])
    rng = np.random.default_rng(7)
    observation = Observation({camera: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for camera in arm7.cameras},
                              (io.home + rng.normal(0.0, 0.1, io.size)).astype(np.float32), INSTRUCTION, 12.5)
    policy = make_policy("lerobot", arm7, {"checkpoint": str(checkpoint)})
    chunk = policy.infer(observation)
    errors = {}
    for case, embodiment, params in [("humanoid", load_embodiment("humanoid_upper"), {}),
                                     ("camera", arm7, {"cameras": {"front": "observation.images.nope"}})]:
        try:
            make_policy("lerobot", embodiment, {"checkpoint": str(checkpoint), **params})
        except PolicyError as error:
            errors[case] = str(error)
    np.savez(out / "answers.npz", state=observation.state, instruction=INSTRUCTION, stamp=observation.stamp,
             **{f"image_{camera}": image for camera, image in observation.images.items()},
             chunk=chunk.actions, dt=chunk.dt, stamp_out=chunk.stamp, by_hand=by_hand(checkpoint, observation, order),
             **{f"error_{case}": message for case, message in errors.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
