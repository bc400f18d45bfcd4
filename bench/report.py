"""The benchmark's table: one row per figure, with the goal it is measured against."""
from __future__ import annotations

MB = 2**20


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def _verdict(value: float, goal: float, at_most: bool) -> str:
    return "met" if (value <= goal if at_most else value >= goal) else "not met"


def generation_rows(g: dict) -> list[tuple]:
    m, secs = g["median_s"], g["seconds"]
    rows = [("1", f"conditioning overhead: fusion + ours / plain (same decoder, random text-like states, "
                  f"L={g['condition_tokens']}, guidance {g['guidance_scale']:g}, greedy, {secs:g} s)",
             _x(g["conditioning_overhead"]), "<= 1.05x", _verdict(g["conditioning_overhead"], 1.05, True)),
            ("1", "  fusion / ours / plain",
             f"{g['fusion_s'] * 1000:.0f} ms / {m['ours']:.1f} s / {m['plain']:.1f} s", "", ""),
            ("3", f"generate speedup, stock generate() / ours (fp32, exact), {g['steps']} steps",
             _x(g["generate_speedup"]), ">= 2x", _verdict(g["generate_speedup"], 2.0, False)),
            ("3", "  stock / ours fp32", f"{m['stock']:.1f} s / {m['ours']:.1f} s "
                                        f"({1000 * m['ours'] / g['steps']:.0f} ms/step, weights streamed at "
                                        f"{g['weight_gb_per_s']['float32']:.1f} GB/s)", "", ""),
            *_auto_rows(g),
            ("3", "  greedy tokens equal, stock vs ours",
             f"{100 * g['stock_vs_ours']['token_agreement']:.1f} %", "100 %", "")]
    if "ours_transformers_forward" in m:
        speed = g["speedup_by_path"]["ours_transformers_forward"]
        rows.append(("3", "  ours through transformers' forward (previous loop)",
                     f"{m['ours_transformers_forward']:.1f} s ({_x(speed)})", "", ""))
    for p, f in g["precisions"].items():
        speed = g["speedup_by_path"][f"ours_{p}"]
        rows.append(("3", f"generate speedup, {p} weights (opt-in)", _x(speed), ">= 2x", _verdict(speed, 2.0, False)))
        t = m[f"ours_{p}"]
        rows.append(("3", f"  {p}: time / one-off conversion", f"{t:.1f} s ({1000 * t / g['steps']:.0f} ms/step, "
                     f"{g['weight_gb_per_s'][p]:.1f} GB/s) / {f['build_s']:.1f} s", "", ""))
        rows.append(("3", f"  {p} vs fp32, same steps: argmax agreement / logit cosine mean (min)",
                     f"{100 * f['argmax_agreement']:.1f} % / {f['logit_cosine_mean']:.5f} "
                     f"({f['logit_cosine_min']:.4f})", "", ""))
        rows.append(("3", f"  {p} vs fp32, free-running greedy tokens equal",
                     f"{100 * f['token_agreement']:.1f} % (first difference at frame "
                     f"{f['first_divergent_frame']})", "", ""))
    return rows


def _auto_rows(g: dict) -> list[tuple]:
    """The headline at the CPU's ``--precision auto`` (its sampling path is one of the timed precisions)."""
    speed = g.get("generate_speedup_cpu_auto")
    if speed is None:
        return []
    return [("3", f"generate speedup at --precision auto on a CPU ({g['cpu_auto_sampling']} sampling) / stock fp32",
             _x(speed), ">= 2x", _verdict(speed, 2.0, False))]


def feature_rows(f: dict) -> list[tuple]:
    m = f["median_s"]
    what = f"{f['frames_decoded']} frames, {f['clip_frames']} CLIP, {f['flow_frames']} flow"
    return [("2", f"features / decode at --precision auto (CLIP {f['auto_semantic_dtype']}, batched, decoding "
                  f"overlapped; {what})",
             _x(f["features_vs_decode"]), "<= 1.5x", _verdict(f["features_vs_decode"], 1.5, True)),
            ("2", "  the same with CLIP in fp32", _x(f["features_vs_decode_fp32"]), "", ""),
            ("2", "  decode / decode + frame conversions (sample_frames) / extract fp32 / extract auto",
             f"{m['decode']:.2f} s / {m['sample_frames']:.2f} s / {m['extract']:.2f} s / {m['extract_auto']:.2f} s",
             "", ""),
            ("2", "  CLIP fp32 / auto / flow features", f"{m['clip']:.2f} s ({f['clip_ms_per_frame']:.0f} ms/frame) / "
             f"{m['clip_auto']:.2f} s ({f['clip_auto_ms_per_frame']:.0f} ms/frame) / {m['flow']:.2f} s", "", ""),
            ("2", "  CLIP auto vs fp32: embedding cosine (min)", f"{f['clip_auto_cosine_min']:.5f}", "", "")]


def training_rows(t: dict | None, share: dict, sizes: dict | None, qlora: dict | None) -> list[tuple]:
    rows = []
    if t:
        m = t["median_s"]
        rows += [("4", f"training step, on the fly / cached ({t['seconds']:g} s clip, batch 1, {t['mixed_precision']})",
                  _x(t["cached_step_speedup"]), ">= 5x", _verdict(t["cached_step_speedup"], 5.0, False)),
                 ("4", "  cached / on the fly", f"{m['cached']:.2f} s / {m['on_the_fly']:.2f} s", "", "")]
        if "cached_step_overhead" in t:
            rows += [("4", "cached step overhead: train.py's step (DataLoader, crops, collate, fusion, dropout) / "
                           "the decoder's own forward + backward on the same batch",
                      _x(t["cached_step_overhead"]), "<= 1.05x", _verdict(t["cached_step_overhead"], 1.05, True)),
                     ("4", "  full step / decoder only", f"{m['full_step']:.2f} s / {m['decoder_only']:.2f} s", "", "")]
    rows.append(("4", f"trainable share ({share['trainable']:,} of {share['total']:,})",
                 f"{100 * share['trainable_share']:.2f} %", "<= 2 %", _verdict(share["trainable_share"], 0.02, True)))
    for preset, s in (sizes or {}).items():
        d = s["decoder_bytes"]
        rows.append(("4", f"{preset} decoder fp32 / bf16 / 8-bit / 4-bit",
                     " / ".join(_mb(d[k] / MB) for k in ("fp32", "bf16", "8bit", "4bit")), "", ""))
        rows.append(("4", f"  {preset} + CLIP tower & codec (fp32) + fusion & LoRA: total with 4-bit decoder",
                     _mb(s["total_bytes"]["4bit"] / MB), "", ""))
    if qlora:
        rows.append(("4", f"QLoRA step ({qlora['preset']}, 4-bit NF4, bf16, {qlora['seconds']:g} s clip): peak RSS",
                     _mb(qlora["process_peak_rss_mb"]), "", ""))
        held = qlora["decoder_bytes"]
        rows.append(("4", "  RSS after load / peak during the step / step time",
                     f"{_mb(qlora['rss_after_load_mb'])} / {_mb(qlora['step_peak_rss_mb'])} / {qlora['step_s']:.1f} s",
                     "", ""))
        rows.append(("4", "  decoder held: 4-bit linears / other params / LoRA / buffers",
                     " / ".join(_mb(held[k] / MB) for k in ("quantized_linear", "other_parameters", "lora", "buffers")),
                     "", ""))
        if sizes and qlora["preset"] in sizes:
            rows.append(("4", "  4-bit linears as computed for the table above",
                         _mb(sizes[qlora["preset"]]["decoder_linear_4bit_bytes"] / MB), "", ""))
    return rows


def scaling_rows(s: dict) -> list[tuple]:
    rows = []
    for seconds, r in s.items():
        added = (r["peak_rss_mb"] - r["rss_before_mb"]) if r.get("peak_rss_mb") and r.get("rss_before_mb") else None
        rows.append(("5", f"{seconds:g} s output: time / per step / peak RSS (+ over RSS before) / KV cache",
                     f"{r['time_s']:.1f} s / {r['ms_per_step']:.0f} ms / {_mb(r.get('peak_rss_mb'))} "
                     f"(+{_mb(added)}) / {r['kv_cache_mb']:.0f} MB", "", ""))
    rows += [("5", "60 s, 180 s (windows)", "not yet", "later issue", "")]
    return rows


def format_table(rows: list[tuple]) -> str:
    header = ("§", "figure", "value", "goal", "")
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(5)]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
