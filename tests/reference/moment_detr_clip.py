"""Moment-DETR's CLIP video feature extractor, ported step by step as an independent reference.

Source: https://github.com/jayleicn/moment_detr, commit b7e553ac3b0c898ee6b85e03ee507c064eab89ca,
``run_on_video/data_utils.py`` (``ClipFeatureExtractor``, ``VideoLoader``, ``Preprocessing``,
``Normalize``) and ``run_on_video/run.py`` (``MomentDETRPredictor``: ``clip_len = 2``,
``F.normalize(video_feats, dim=-1, eps=1e-5)``). Its ``VideoLoader`` is copied from
https://github.com/linjieli222/HERO_Video_Feature_Extractor ``clip/video_loader.py``, which made
the released QVHighlights CLIP features. MIT License, Copyright (c) 2021 Jie Lei (Moment-DETR) and
Copyright (c) 2020 Microsoft Corporation (HERO_Video_Feature_Extractor); the licence text is in
both repositories.

What is changed, and only that:
- ``ffmpeg.probe`` -> the stream's fields through PyAV (coded width and height, the stream duration);
- the ``ffmpeg`` command (``fps`` filter, ``scale``, ``crop``, rgb24 pipe) -> every frame decoded with
  PyAV; the ``fps`` filter's choice of frames transcribed from FFmpeg's ``libavfilter/vf_fps.c``
  (a two-frame buffer, timestamps rounded to the output rate half away from zero, end of stream at
  the end of the last frame); each chosen frame scaled alone by FFmpeg's ``scale`` filter with the
  ``bicubic`` flags that the ffmpeg command line gives it, and cropped by slicing the array;
- OpenAI's ``clip.load(...).encode_image`` -> a transformers CLIP's projected image embedding.

Test code only (tests/video/test_clip_release.py): nothing in g2l or bench imports it.
"""

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F


def _round_near_inf(value: Fraction) -> int:
    """``av_rescale_q_rnd(..., AV_ROUND_NEAR_INF)``: to the nearest integer, halves away from zero."""
    sign = -1 if value < 0 else 1
    return sign * math.floor(abs(value) + Fraction(1, 2))


def fps_filter(frames, fps: Fraction):
    """The frames ffmpeg's ``fps=fps`` filter outputs, from ``[(pts, duration, time_base, frame)]``
    in decoding order (vf_fps.c, FFmpeg 4.3 and later: ``activate``/``write_frame``)."""
    out_tb = 1 / fps
    buffered, next_pts, output = [], None, []
    status_pts = None
    for index, (pts, duration, time_base, frame) in enumerate(frames):
        rounded = _round_near_inf(pts * time_base / out_tb)
        if next_pts is None:
            next_pts = rounded
        buffered.append((rounded, frame))
        while len(buffered) == 2:
            if buffered[1][0] <= next_pts:
                buffered.pop(0)  # drop the first frame
            else:
                output.append(buffered[0][1])
                next_pts += 1
        if index == len(frames) - 1:
            status_pts = _round_near_inf((pts + duration) * time_base / out_tb)
    while buffered:  # end of stream: repeat the last frame up to status_pts
        if status_pts <= next_pts:
            buffered.pop(0)
        else:
            output.append(buffered[0][1])
            next_pts += 1
    return output


def _scale_bicubic(frame, width: int, height: int) -> np.ndarray:
    """FFmpeg's ``scale=width:height`` (flags=bicubic), converting to rgb24, on one frame."""
    import av

    graph = av.filter.Graph()
    chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                              time_base=Fraction(1, 1000)),
             graph.add("scale", f"{width}:{height}:flags=bicubic"), graph.add("format", "rgb24"),
             graph.add("buffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    frame.pts = 0
    graph.push(frame)
    return graph.pull().to_ndarray()


class Normalize(object):

    def __init__(self, mean, std):
        self.mean = torch.FloatTensor(mean).view(1, 3, 1, 1)
        self.std = torch.FloatTensor(std).view(1, 3, 1, 1)

    def __call__(self, tensor):
        tensor = (tensor - self.mean) / (self.std + 1e-8)
        return tensor


class Preprocessing(object):

    def __init__(self):
        self.norm = Normalize(
            mean=[0.48145466, 0.4578275, 0.40821073],
            std=[0.26862954, 0.26130258, 0.27577711])

    def __call__(self, tensor):
        tensor = tensor / 255.0
        tensor = self.norm(tensor)
        return tensor


class VideoLoader:
    def __init__(self, framerate=1/2, size=224, centercrop=True):
        self.centercrop = centercrop
        self.size = size
        self.framerate = framerate

    def _get_video_info(self, video_path):
        import av

        with av.open(video_path) as container:
            video_stream = container.streams.video[0]
            width = int(video_stream.codec_context.width)
            height = int(video_stream.codec_context.height)
            try:
                duration = float(video_stream.duration * video_stream.time_base)
            except Exception:
                duration = -1
        return {"duration": duration, "height": height, "width": width}

    def _get_output_dim(self, h, w):
        if isinstance(self.size, tuple) and len(self.size) == 2:
            return self.size
        elif h >= w:
            return int(h * self.size / w), self.size
        else:
            return self.size, int(w * self.size / h)

    def read_video_from_file(self, video_path):
        import av

        info = self._get_video_info(video_path)
        h, w = info["height"], info["width"]
        height, width = self._get_output_dim(h, w)
        try:
            duration = info["duration"]
            fps = self.framerate
            if duration > 0 and duration < 1/fps+0.1:
                fps = 2/max(int(duration), 1)
        except Exception:
            fps = self.framerate
        with av.open(video_path) as container:
            stream = container.streams.video[0]
            decoded = [(frame.pts, frame.duration, frame.time_base, frame) for frame in container.decode(stream)]
        chosen = fps_filter(decoded, Fraction(fps).limit_denominator(1001000))
        out = np.stack([_scale_bicubic(frame, width, height) for frame in chosen])
        if self.centercrop:
            x = int((width - self.size) / 2.0)
            y = int((height - self.size) / 2.0)
            out = out[:, y:y + self.size, x:x + self.size]
        if self.centercrop and isinstance(self.size, int):
            height, width = self.size, self.size
        video = np.ascontiguousarray(out).reshape([-1, height, width, 3])
        video = torch.from_numpy(video.astype('float32'))
        video = video.permute(0, 3, 1, 2)
        return video


class ClipFeatureExtractor:
    def __init__(self, clip_model, framerate=1/2, size=224, centercrop=True):
        self.video_loader = VideoLoader(framerate=framerate, size=size, centercrop=centercrop)
        self.clip_extractor = clip_model  # a transformers CLIPModel
        self.video_preprocessor = Preprocessing()

    @torch.no_grad()
    def encode_image(self, frames):
        output = self.clip_extractor.get_image_features(pixel_values=frames)
        return output if torch.is_tensor(output) else output.pooler_output

    @torch.no_grad()
    def encode_video(self, video_path: str, bsz=60):
        video_frames = self.video_loader.read_video_from_file(video_path)  # (T, H, W, 3)
        video_frames = self.video_preprocessor(video_frames)
        n_frames = len(video_frames)
        n_batch = int(math.ceil(n_frames / bsz))
        video_features = []
        for i in range(n_batch):
            st_idx = i * bsz
            ed_idx = (i+1) * bsz
            _video_frames = video_frames[st_idx:ed_idx]
            _video_features = self.encode_image(_video_frames)
            video_features.append(_video_features)
        video_features = torch.cat(video_features, dim=0)
        return video_features  # (T=#frames, d) torch tensor


def normalized_video_features(extractor: ClipFeatureExtractor, video_path: str) -> torch.Tensor:
    """``MomentDETRPredictor.localize_moment``'s first two lines: the features the model sees."""
    video_feats = extractor.encode_video(video_path)
    return F.normalize(video_feats, dim=-1, eps=1e-5)
