"""The built-in VLA: images + instruction + state -> a chunk of actions by flow matching (pi0-style).

Prefix (computed once per request): each camera through a small convolutional encoder whose
stages are all FiLM-conditioned on the instruction (what the image encoder looks for depends on the
words, down to the first stage, where a small cube's colour is still a pixel of its own), one token per feature-map
cell plus camera and position embeddings; a token for the
sentence embedding, one for the normalised state, one for the embodiment; a transformer trunk
over all of them.

Action expert: a transformer over the H noisy action tokens (padded width, flow time added)
that cross-attends to the prefix and predicts the flow velocity. Sampling integrates the flow
from noise (t = 0) to actions (t = 1) with Euler steps, reusing the prefix at every step.

Goal: a flow model can sample any of the motions seen in a scene without reading the instruction
(reaching for a random cube costs it little loss), and later frames show where the arm is already
heading, so it can learn to continue that motion instead (the "copycat" failure). So the words
ground a goal first: each camera's stage-2 features, FiLM-conditioned on the instruction, become
spatial-softmax keypoints (the expected image position of each of K attention maps: what a colour
picks out), and a head regresses from them and the state where the end effector goes next (its
next keypose, hindsight from the demonstrations, vla_ros.data.dataset), in the root frame or, in
newer checkpoints, seen from the end effector (EmbodimentStats.goal_in_tool). A regression cannot
hedge between cubes. The sentence reaches the head only through FiLM (which cube the keypoints
fall on), not as an input of its own: words it never saw then change what is attended to, not the
regressed position (given directly, held-out phrasings moved goals by 1.4 cm on average). The goal
enters the prefix as a token; training feeds the demonstration's goal (with noise the size of the
head's error), sampling the head's prediction, so the action expert learns to go where the goal
says. Embodiments without an end-effector frame have no goal token.

Real-time chunking: given the actions that will execute while inference runs (the prefix of
the chunk, K steps), each Euler step pulls its estimate of the clean chunk towards them: fully on
the first K steps, fading out over the next `rtc_overlap` (inpainting guidance: the first K
actions come out equal to what the robot is doing, the rest bends smoothly away from it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vla_ros.model.config import ModelConfig

KEYPOINT_STAGE = 1  # keypoints come from the second encoder stage (a quarter of the image size)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) maps -> (B, 2K): each map's softmax-weighted mean (x..., y...) in [-1, 1]."""
    batch, count, height, width = logits.shape
    weights = logits.flatten(2).softmax(-1).view(batch, count, height, width)
    xs = torch.linspace(-1.0, 1.0, width, dtype=logits.dtype)
    ys = torch.linspace(-1.0, 1.0, height, dtype=logits.dtype)
    return torch.cat([(weights.sum(2) * xs).sum(-1), (weights.sum(3) * ys).sum(-1)], dim=-1)


class FiLMEncoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, h*w, d) tokens and (B, 2K) keypoints; FiLM from the text on every stage."""

    def __init__(self, channels: tuple[int, ...], d_model: int, text_dim: int, image_size: tuple[int, int],
                 keypoints: int):
        super().__init__()
        stages, previous = [], 3
        for index, width in enumerate(channels):
            kernel = 5 if index == 0 else 3
            stages.append(nn.Sequential(nn.Conv2d(previous, width, kernel, stride=2, padding=kernel // 2),
                                        nn.GroupNorm(8, width), nn.GELU()))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.films = nn.ModuleList(nn.Linear(text_dim, 2 * width) for width in channels)
        for film in self.films:  # start as the identity
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        height, width = image_size
        for _ in channels:
            height, width = (height + 1) // 2, (width + 1) // 2
        self.cells = height * width
        self.project = nn.Linear(previous, d_model)
        self.position = nn.Parameter(torch.randn(self.cells, d_model) * 0.02)
        self.keypoint_maps = nn.Conv2d(channels[KEYPOINT_STAGE], keypoints, 1)
        self.keypoint_sharpness = nn.Parameter(torch.zeros(()))  # log of the softmax's inverse temperature

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images - 0.5
        for index, (stage, film) in enumerate(zip(self.stages, self.films)):
            gamma, beta = film(text).chunk(2, dim=-1)
            x = stage(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
            if index == KEYPOINT_STAGE:
                points = spatial_softmax(self.keypoint_maps(x) * self.keypoint_sharpness.exp())
        return self.project(x.flatten(2).transpose(1, 2)) + self.position, points


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, d) -> (B, heads, L, d/heads)."""
    batch, length, d = x.shape
    return x.view(batch, length, heads, d // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d/heads) -> (B, L, d)."""
    batch, heads, length, part = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * part)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow times t (B,) in [0, 1] -> (B, dim)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    angles = t[:, None] * 1000.0 * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class VLA(nn.Module):
    """The built-in VLA: the prefix (images, instruction, state, embodiment, goal) and the action expert."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        arch = config.architecture
        self.config = config
        d = arch.d_model
        self.camera_index = {name: i for i, name in enumerate(config.cameras)}
        self.embodiment_index = {name: i for i, name in enumerate(config.embodiments)}
        self.encoder = FiLMEncoder(arch.channels, d, arch.text_dim, arch.image_size, arch.keypoints)
        self.camera_embedding = nn.Embedding(max(len(config.cameras), 1), d)
        self.embodiment_embedding = nn.Embedding(max(len(config.embodiments), 1), d)
        self.text_projection = nn.Sequential(nn.Linear(arch.text_dim, d), nn.GELU(), nn.Linear(d, d))
        self.state_projection = nn.Sequential(nn.Linear(config.width, d), nn.GELU(), nn.Linear(d, d))
        self.trunk = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, arch.heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True), arch.trunk_layers, enable_nested_tensor=False)
        self.trunk_norm = nn.LayerNorm(d)
        self.action_in = nn.Linear(config.width, d)
        self.step_embedding = nn.Parameter(torch.randn(config.horizon, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.expert = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, arch.heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True), arch.expert_layers)
        self.action_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.width))
        points = 2 * arch.keypoints * max(len(config.cameras), 1)
        self.goal_head = nn.Sequential(nn.Linear(points + config.width, 256), nn.GELU(),
                                       nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 3))
        self.goal_projection = nn.Sequential(nn.Linear(3, d), nn.GELU(), nn.Linear(d, d))

    def prefix(self, images: dict[str, torch.Tensor], text: torch.Tensor, state: torch.Tensor, embodiment: str,
               goal: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Context tokens (B, T, d) and the predicted normalised goal (B, 3).

        The goal is None for an embodiment without a goal frame. Inputs: camera images (B, 3, H, W) in
        [0, 1], sentence embeddings (B, text_dim), normalised padded states (B, width) of one
        embodiment. `goal` (B, 3), when given, makes the goal token instead of the prediction.
        """
        batch = state.shape[0]
        names = list(images)
        tokens, points = [], {}
        if names:  # all cameras through the encoder as one batch: one pass of its layers, not one per camera
            cells, keypoints = self.encoder(torch.cat([images[name] for name in names]), text.repeat(len(names), 1))
            tokens = [cell + self.camera_embedding.weight[self.camera_index[name]]
                      for name, cell in zip(names, cells.split(batch))]
            points = dict(zip(names, keypoints.split(batch)))
        body = self.embodiment_embedding.weight[self.embodiment_index[embodiment]].expand(batch, 1, -1)
        tokens += [self.text_projection(text)[:, None], self.state_projection(state)[:, None], body]
        predicted = None
        if self.config.embodiments[embodiment].has_goal:
            absent = torch.zeros(batch, 2 * self.config.architecture.keypoints, dtype=state.dtype)
            seen = [points.get(name, absent) for name in self.camera_index]
            predicted = self.goal_head(torch.cat([*seen, state], dim=-1))
            tokens.append(self.goal_projection(predicted if goal is None else goal)[:, None])
        return self.trunk_norm(self.trunk(torch.cat(tokens, dim=1))), predicted

    def memory(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each expert layer's cross-attention keys and values of the prefix, split into heads.

        (B, heads, T, d/heads): computed once per request, reused at every denoising step.
        """
        d, heads = context.shape[-1], self.config.architecture.heads
        cached = []
        for layer in self.expert.layers:
            attention = layer.multihead_attn
            keys = F.linear(context, attention.in_proj_weight[d:2 * d], attention.in_proj_bias[d:2 * d])
            values = F.linear(context, attention.in_proj_weight[2 * d:], attention.in_proj_bias[2 * d:])
            cached.append((_heads(keys, heads), _heads(values, heads)))
        return cached

    def velocity(self, memory: list[tuple[torch.Tensor, torch.Tensor]], noisy: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
        """Flow velocity (B, H, width) at noisy chunks (B, H, width) and flow times t (B,).

        Given the prefix's `memory()`.

        The expert's layers are nn.TransformerDecoderLayers (pre-norm, GELU, no dropout), evaluated
        here as their plain arithmetic, with the prefix's keys and values cached: the module's own
        forward recomputes them and spends most of a denoising step on per-call checks
        (test_model pins the two to the same numbers).
        """
        d, heads = self.step_embedding.shape[1], self.config.architecture.heads
        x = self.action_in(noisy) + self.step_embedding + self.time_mlp(time_embedding(t, d))[:, None]
        for layer, (keys, values) in zip(self.expert.layers, memory):
            own = layer.self_attn
            h = layer.norm1(x)
            q, k, v = F.linear(h, own.in_proj_weight, own.in_proj_bias).chunk(3, dim=-1)
            x = x + own.out_proj(_merge(F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads),
                                                                       _heads(v, heads))))
            cross = layer.multihead_attn
            q = F.linear(layer.norm2(x), cross.in_proj_weight[:d], cross.in_proj_bias[:d])
            x = x + cross.out_proj(_merge(F.scaled_dot_product_attention(_heads(q, heads), keys, values)))
            x = x + layer.linear2(F.gelu(layer.linear1(layer.norm3(x))))
        return self.action_out(x)

    def loss(self, context: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss on normalised padded chunks (B, H, width).

        `mask` (width,) picks the used slots. Padding is zero in the noisy input as it is when
        sampling, and out of the loss.
        """
        keep = mask.to(actions.dtype)
        actions = actions * keep
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype) * keep
        t = torch.rand(actions.shape[0], generator=generator, dtype=actions.dtype)
        noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
        error = (self.velocity(self.memory(context), noisy, t) - (actions - noise)) ** 2
        return error[..., mask].mean()

    @torch.no_grad()
    def sample(self, context: torch.Tensor, mask: torch.Tensor, steps: int, generator: torch.Generator | None = None,
               guide: torch.Tensor | None = None, guide_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Chunks (B, H, width) by `steps` Euler steps of the flow; padding comes out 0.

        `guide` (B, H, width) with `guide_weights` (H,) in [0, 1]: inpainting guidance towards it.
        """
        batch, horizon, width = context.shape[0], self.config.horizon, self.config.width
        x = torch.randn((batch, horizon, width), generator=generator, dtype=context.dtype) * mask
        memory = self.memory(context)
        for index in range(steps):
            t = index / steps
            v = self.velocity(memory, x, torch.full((batch,), t, dtype=context.dtype))
            if guide is not None:
                clean = x + (1 - t) * v
                clean = clean + guide_weights[None, :, None] * (guide - clean)
                v = (clean - x) / (1 - t)
            x = (x + v / steps) * mask
        return x
