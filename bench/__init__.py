"""Speed and memory of the video-to-music model, measured against plain MusicGen and the goals of issue 7.

    python -m bench [--preset small] [--seconds 10] [--repeats 3] [--generation-repeats 1] [--threads N] [--json PATH]
                    [--precisions int8,bfloat16] [--skip generation,scaling,features,training,sizes,qlora]

Real architectures with random weights (``model.sizes``): compute and memory match the released models, no
download is needed; quality figures (token agreement) describe the code paths, not music. ``bench/__main__.py``
lists the sections. Budget: the small preset's default run streams ~1.5 GB of weights per generated step, about
4,000 steps in all (four 10 s generations per repeat, plus 5 s and 30 s for scaling), so its time is mostly memory
bandwidth; on a busy shared machine use ``--threads 1`` (OpenMP threads that wait for a busy core stall every op)
and, if needed, ``--skip scaling`` (the 30 s generation is a third of the run).
"""
