"""Lip sync with MuseTalk 1.5: a still portrait and 16 kHz speech in, one RGB frame per video frame out.

MuseTalk is one step of latent inpainting, not a diffusion loop. Its UNet
takes 8 latent channels at 32x32, the 256x256 face crop with its lower half
blanked and the whole crop, both through the sd-vae-ft-mse encoder, and
returns the 4 latent channels of a face whose mouth matches the audio it is
given through cross-attention: 10 whisper-tiny feature steps (0.2 s, centred
on the frame) from every encoder layer. The VAE decodes that face, and it is
blended back into the portrait.

Choices here, and why:

- No mmlab stack (mmpose, mmdet, mmcv): the face comes as InsightFace's box
  and 5 key points (:mod:`enfoads.services.lipsync_mask`), which the product
  already has; MuseTalk's crop rule is applied to those.
- No face-parsing network for the paste-back (MuseTalk's is trained on
  non-commercial data): a feathered lower-face ellipse, which also promises
  that every pixel outside it stays byte-identical.
- A still portrait's reference latents do not change from frame to frame, so
  :meth:`LipSync.prepare` encodes them once; each batch then costs one UNet
  step and one VAE decode.
- fp16 on CUDA (the loader's choice), the latents' distribution mean instead
  of a sample (the same audio gives the same video), ``torch.inference_mode``
  per batch only, so no autograd state leaks into the caller between frames.
- The audio's whisper features are computed once per clip; each batch slices
  its own windows from them (a window per frame would repeat every step 5
  times in memory).
- Frames cover the whole audio: ``ceil(seconds * fps)`` (MuseTalk floors,
  which drops the last partial frame), the windows past the end see zeros,
  as MuseTalk's own right padding gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from enfoads.services.lipsync_mask import FaceGeometry, crop_box, lower_face_mask, paste

SAMPLE_RATE = 16000
CROP_SIZE = 256
WHISPER_STEPS_PER_SECOND = 50  # whisper's encoder: 2 x 10 ms hops per output step
SEGMENT_SECONDS = 30  # whisper's fixed input length
PADDING_FRAMES = 2  # MuseTalk's audio_padding_length_left and _right, in video frames
WINDOW_STEPS = 2 * (PADDING_FRAMES + PADDING_FRAMES + 1)  # 10 steps: 0.2 s around the frame

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PreparedPortrait:
    """What :meth:`LipSync.frames` needs of one portrait, computed once.

    ``latents`` is (1, 8, 32, 32) on the models' device: the masked crop's
    latents, then the whole crop's, both times the VAE's scaling factor.
    """

    portrait: np.ndarray  # H x W x 3 uint8 RGB, read-only
    face: FaceGeometry
    crop: tuple[int, int, int, int]
    mask: np.ndarray  # crop-sized float32 blend weights
    latents: object  # torch.Tensor


class LipSync:
    """MuseTalk 1.5 over loaded models (``enfoads.models.loaders.lipsync.load_musetalk``)."""

    def __init__(self, models, *, batch_size: int = 8, fps: int = 25) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(fps) != fps or fps < 1:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        self.models = models
        self.batch_size = int(batch_size)
        self.fps = int(fps)

    # ----------------------------------------------------------------------- portrait

    def prepare(self, portrait_rgb: np.ndarray, face: FaceGeometry) -> PreparedPortrait:
        import cv2
        import torch

        if (not isinstance(portrait_rgb, np.ndarray) or portrait_rgb.ndim != 3 or portrait_rgb.shape[2] != 3
                or portrait_rgb.dtype != np.uint8):
            raise ValueError("the portrait must be an H x W x 3 uint8 RGB array")
        height, width = portrait_rgb.shape[:2]
        crop = crop_box(face, width, height)
        x1, y1, x2, y2 = crop
        mask = lower_face_mask(face, crop)
        pixels = cv2.resize(portrait_rgb[y1:y2, x1:x2], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)
        whole = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
        masked = whole.clone()
        masked[:, CROP_SIZE // 2:, :] = 0  # MuseTalk blanks the lower half in pixels, before [-1, 1]
        images = torch.stack([masked, whole]) * 2.0 - 1.0
        vae = self.models.vae
        with torch.inference_mode():
            images = images.to(device=self.models.device, dtype=self.models.dtype)
            latents = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor
            latents = torch.cat([latents[0:1], latents[1:2]], dim=1)
        portrait = portrait_rgb.copy()
        portrait.setflags(write=False)
        mask.setflags(write=False)
        return PreparedPortrait(portrait=portrait, face=face, crop=crop, mask=mask, latents=latents)

    # ----------------------------------------------------------------------- audio

    def frame_count(self, n_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
        """Video frames that cover ``n_samples`` of audio: the last one may be partly past its end."""
        if n_samples < 0 or sample_rate < 1:
            raise ValueError(f"need n_samples >= 0 and sample_rate >= 1, got {n_samples}, {sample_rate}")
        return -(-int(n_samples) * self.fps // int(sample_rate))

    def _check_audio(self, audio) -> np.ndarray:
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio must be mono: one dimension of 16 kHz samples, got shape {samples.shape}")
        if samples.size == 0:
            raise ValueError("audio is empty: there is nothing to lip-sync")
        if not np.isfinite(samples).all():
            raise ValueError("audio holds NaN or infinite samples")
        return samples

    def _left_padding(self) -> int:
        # MuseTalk pads ceil(steps per frame) x padding frames: 4 steps at 25 fps.
        return math.ceil(WHISPER_STEPS_PER_SECOND / self.fps) * PADDING_FRAMES

    def _window_start(self, frame: int) -> int:
        return frame * WHISPER_STEPS_PER_SECOND // self.fps

    def _features(self, samples: np.ndarray):
        """Whisper hidden states for the clip, zero-padded: (steps, layers, d_model) on the device."""
        import torch

        models = self.models
        segment = SEGMENT_SECONDS * SAMPLE_RATE
        parts = []
        with torch.inference_mode():
            for start in range(0, samples.size, segment):
                mel = models.features(samples[start:start + segment], sampling_rate=SAMPLE_RATE,
                                      return_tensors="pt").input_features
                mel = mel.to(device=models.device, dtype=models.dtype)
                hidden = models.whisper_encoder(mel, output_hidden_states=True).hidden_states
                parts.append(torch.stack(hidden, dim=2)[0])  # (1500, layers, d_model)
            steps = torch.cat(parts, dim=0)[: samples.size * WHISPER_STEPS_PER_SECOND // SAMPLE_RATE]
            frames = self.frame_count(samples.size)
            left = self._left_padding()
            needed = self._window_start(frames - 1) + WINDOW_STEPS
            right = max(0, needed - left - steps.shape[0])
            zeros = steps.new_zeros
            steps = torch.cat([zeros((left, *steps.shape[1:])), steps, zeros((right, *steps.shape[1:]))])
        return steps, frames

    def _windows(self, steps, first: int, last: int):
        """Frames ``first`` to ``last - 1``'s audio tokens: (frames, WINDOW_STEPS * layers, d_model)."""
        import torch

        windows = [steps[self._window_start(i): self._window_start(i) + WINDOW_STEPS] for i in range(first, last)]
        stacked = torch.stack(windows)  # (frames, 10, layers, d_model): time-major, as MuseTalk flattens
        return stacked.reshape(stacked.shape[0], -1, stacked.shape[-1])

    def audio_windows(self, audio: np.ndarray):
        """Every frame's audio tokens, (frame_count, 10 * layers, d_model), before the positional encoding.

        ``audio`` is float32 mono at 16 kHz. :meth:`frames` adds the
        positional encoding per batch, as MuseTalk does.
        """
        steps, frames = self._features(self._check_audio(audio))
        return self._windows(steps, 0, frames)

    # ----------------------------------------------------------------------- video

    def _render_batch(self, latents, steps, first: int, last: int) -> np.ndarray:
        """Generated faces for frames ``first`` to ``last - 1``: (n, 256, 256, 3) uint8 RGB on the host."""
        import torch

        models = self.models
        scaling = models.vae.config.scaling_factor
        with torch.inference_mode():
            tokens = models.positional(self._windows(steps, first, last))
            batch = latents.to(device=models.device, dtype=models.dtype).expand(last - first, -1, -1, -1)
            timestep = torch.zeros((), device=models.device, dtype=torch.long)
            predicted = models.unet(batch, timestep, encoder_hidden_states=tokens).sample
            faces = models.vae.decode(predicted / scaling).sample
            faces = ((faces / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
            return faces.permute(0, 2, 3, 1).cpu().numpy()

    def _compose(self, prepared: PreparedPortrait, face: np.ndarray) -> np.ndarray:
        import cv2

        x1, y1, x2, y2 = prepared.crop
        size = (x2 - x1, y2 - y1)
        shrink = size[0] * size[1] < CROP_SIZE * CROP_SIZE
        resized = cv2.resize(face, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return paste(prepared.portrait, resized, prepared.crop, prepared.mask)

    def frames(self, prepared: PreparedPortrait, audio: np.ndarray, *,
               progress: Progress | None = None) -> Iterator[np.ndarray]:
        """One full-size H x W x 3 uint8 RGB frame per video frame, in order.

        Work is done a batch at a time, as frames are pulled. ``progress(done,
        total)`` is called after each batch is generated, before its frames are
        yielded; whatever it raises (a cancelled job) ends the generation
        there and reaches the caller.
        """
        samples = self._check_audio(audio)  # refused here, not at the first frame pulled
        return self._generate(prepared, samples, progress)

    def _generate(self, prepared: PreparedPortrait, samples: np.ndarray,
                  progress: Progress | None) -> Iterator[np.ndarray]:
        steps, total = self._features(samples)
        for first in range(0, total, self.batch_size):
            last = min(first + self.batch_size, total)
            faces = self._render_batch(prepared.latents, steps, first, last)
            if progress is not None:
                progress(last, total)
            for face in faces:
                yield self._compose(prepared, face)
