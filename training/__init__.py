"""Training internals used by ``train.py``: deterministic batches of clips and safe, resumable checkpoints."""
