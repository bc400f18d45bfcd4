"""Objective metrics for video-to-music generation (DESIGN.md section 5).

One small module per metric, numpy in / numpy out; heavy models are loaded only by the ``load_*`` functions:

- ``fad``        Fréchet Audio Distance between Gaussian fits of two embedding sets (Kilgour et al., 2019)
- ``embedders``  audio embedders for FAD: weight-free log-mel statistics, codec latents (EnCodec-style), CLAP
- ``vggish``     VGGish (Hershey et al., 2017), the embedder the FAD papers use; needs its published weights
- ``kld``        KL divergence of audio-tagger label distributions, both directions (audiocraft's definition)
- ``chroma``     frame-wise cosine similarity of 12-bin chromagrams (audiocraft's ChromaCosineSimilarityMetric)
- ``beats``      beat coverage / beat hit scores, BCS / BHS (MuVi's definitions)
- ``av_align``   AV-Align, IoU of audio onsets and video motion peaks (Yariv et al., 2024)
- ``clap``       CLAP score, cosine similarity of CLAP embeddings (audio-audio or audio-text)
- ``stats``      means with bootstrap confidence intervals

Around them: ``audio`` / ``video`` (loading), ``runner`` (matching files by clip id, loading models, scoring
every clip), ``report`` (report.json, report.md, plots) used by the top-level ``eval.py``; ``testing`` makes
synthetic inputs with known answers (flashing videos, click tracks, chords).

``scoring/hub/<name>/<name>.py`` wrap these functions as local ``evaluate`` modules (``evaluate.load(path)``).
Nothing here may be called ``evaluate``: that would shadow the library.
"""
