"""Analytic memory of the GPT workload: weights, gradients, optimizer states, activations,
logits and KV cache, as a breakdown the report sets against the measured peak.

Sources:
  * Model states: Rajbhandari et al. 2020 (ZeRO), sec. 3.1: mixed-precision Adam keeps
    16 B/param (2 fp16 weights + 2 fp16 grads + 4+4+4 fp32 master, momentum, variance).
    With torch autocast the weights stay fp32, so it is 4 (weights) + 4 (grads) + 8 (AdamW
    exp_avg, exp_avg_sq) = 16 B/param as well, plus bf16 copies of the GEMM weights that
    autocast caches during the forward (2 B per N). Plain fp32 AdamW on a CPU: 4+4+8 = 16.
  * Activations: Korthikanti et al. 2022, eq. (1): s·b·h·(34 + 5·a·s/h) bytes per layer
    for 16-bit activations with dropout. This model has no dropout (-2·sbh of masks) and
    its fused SDPA kernels never store the s×s scores (-5·a·s²·b) but do keep their output
    and fp32 log-sum-exp. What autograd saves per layer, in elements of s·b·h: LN inputs 2
    (the residual stream), LN outputs feeding GEMMs 2, q/k/v 3, SDPA output 1 and its
    re-assembled copy 1, MLP hidden before and after GELU 4+4 = 17. Adjusted formula:
        act/layer = s·b·h·(2·e_res + 15·e_act) + 4·a·s·b
    which for e_res = e_act = 2 bytes is 34·sbh + 4·asb: Korthikanti's 34 without the
    5·a·s/h term. e_res is the residual stream's element size (fp32 under autocast).
  * Logits: cross-entropy keeps its log-softmax (B·T·V fp32) and the backward makes the
    gradient of that and of the logits: 3·B·T·V·4 bytes at the peak.
  * KV cache: 2·L·B·ctx·d·bytes (keys and values of every layer and position).

What the runner measures is the peak *above* the memory in use before one step (weights,
optimizer states and the KV cache exist already), so each estimate says which of its parts
are persistent and which are allocated inside a step; `step_bytes` is compared with the
measured peak, and the difference is the unexplained residual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Bytes per parameter of the model states. Training keeps fp32 weights (autocast for 16-bit
# compute), so weights + grads + AdamW states = 4 + 4 + 8 = 16 B/param, the same total as
# ZeRO's mixed-precision Adam (2 + 2 + 4 + 4 + 4).
FP32_BYTES = 4
ADAM_STATES_BYTES = 8  # fp32 exp_avg + exp_avg_sq
FP32_LSE_BYTES = 4  # SDPA's log-sum-exp, one fp32 per (batch, head, position)

ACTIVATION_FORMULA = "s·b·h·(2·e_res + 15·e_act) + 4·a·s·b per layer (Korthikanti 2022 eq. 1, no dropout, fused SDPA)"


def layer_activation_bytes(s: int, b: int, h: int, a: int, e_act: int, e_res: int | None = None) -> int:
    """Saved activations of one block for backward, fused SDPA and no dropout (see module doc)."""
    e_res = e_act if e_res is None else e_res
    return s * b * h * (2 * e_res + 15 * e_act) + FP32_LSE_BYTES * a * s * b


def kv_cache_bytes(n_layer: int, batch: int, ctx: int, d_model: int, elt: int) -> int:
    """2·L·B·ctx·d·bytes: a key and a value vector per layer, sequence and position."""
    return 2 * n_layer * batch * ctx * d_model * elt


@dataclass
class MemoryEstimate:
    """An analytic footprint split into parts (bytes).

    Args:
        persistent: parts that exist before a step runs (weights, optimizer states, cache).
        step: parts allocated while a step runs, in the order they are summed.
        step_bytes: the estimated peak above the pre-step baseline (not always a plain sum:
            see `how`).
        how: the formula behind step_bytes.
    """

    persistent: dict[str, int] = field(default_factory=dict)
    step: dict[str, int] = field(default_factory=dict)
    step_bytes: int = 0
    how: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(self.persistent.values()) + self.step_bytes

    def info(self) -> dict:
        """The fields stored in step.info."""
        return {
            "mem_analytic_bytes": self.total_bytes,
            "mem_analytic_step_bytes": self.step_bytes,
            "mem_breakdown": {**self.persistent, **self.step},
            "mem_formula": self.how,
        }


def train_memory(
    *, n_params: int, n_flop: int, n_layer: int, n_head: int, d_model: int, vocab: int, batch: int, seq_len: int,
    e_act: int, autocast: bool, optimizer_temp: bool,
) -> MemoryEstimate:
    """Training step: fp32 weights and AdamW states persist; grads, activations, logits
    (and, under autocast, bf16 weight copies) are made inside the step.

    Peak above baseline ≈ grads + max(activations + logits + autocast copies, optimizer
    temporaries): the gradients grow while the activations are freed, so the sum of both is
    an upper bound that is reached for the last layers of the backward pass.
    """
    s, b, h, a = seq_len, batch, d_model, n_head
    e_res = 4 if autocast else e_act
    acts = n_layer * layer_activation_bytes(s, b, h, a, e_act, e_res) + 2 * s * b * h * e_res  # + ln_f in/out
    step = {
        "grads": FP32_BYTES * n_params,
        "activations": acts,
        "logits": 3 * b * s * vocab * 4,
    }
    if autocast:
        step["autocast_weight_copies"] = 2 * n_flop
    if optimizer_temp:
        step["optimizer_temporaries"] = FP32_BYTES * n_params  # foreach AdamW: sqrt(exp_avg_sq) list
    fwd_bwd = step["activations"] + step["logits"] + step.get("autocast_weight_copies", 0)
    return MemoryEstimate(
        persistent={"weights": FP32_BYTES * n_params, "optimizer_states": ADAM_STATES_BYTES * n_params},
        step=step,
        step_bytes=step["grads"] + max(fwd_bwd, step.get("optimizer_temporaries", 0)),
        how=f"grads + max(activations + logits, optimizer temporaries); activations: {ACTIVATION_FORMULA}",
    )


def prefill_memory(
    *, n_params: int, d_model: int, vocab: int, batch: int, seq_len: int, elt: int
) -> MemoryEstimate:
    """Inference forward (no grad): nothing is saved; the largest live set inside a block is
    the residual stream, the MLP input and the MLP hidden before and after GELU (10·sbh),
    and the output logits B·T·V."""
    sbh = seq_len * batch * d_model
    step = {"block_transient": 10 * sbh * elt, "logits": batch * seq_len * vocab * elt}
    return MemoryEstimate(
        persistent={"weights": elt * n_params},
        step=step,
        step_bytes=sum(step.values()),
        how="10·s·b·h·bytes (largest live set in a block) + B·T·V logits",
    )


def decode_memory(
    *, n_params: int, n_layer: int, d_model: int, vocab: int, batch: int, ctx: int, elt: int
) -> MemoryEstimate:
    """One decode step: weights and the static KV cache persist; a step only makes per-token
    temporaries (logits B·V and a few B·4d vectors)."""
    step = {"logits": batch * vocab * elt, "block_transient": 10 * batch * d_model * elt}
    return MemoryEstimate(
        persistent={"weights": elt * n_params, "kv_cache": kv_cache_bytes(n_layer, batch, ctx, d_model, elt)},
        step=step,
        step_bytes=sum(step.values()),
        how="KV cache 2·L·B·ctx·d·bytes persists; step: B·V logits + 10·B·d temporaries",
    )
