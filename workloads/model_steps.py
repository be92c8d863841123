"""The three Steps of the GPT workload (train, prefill, decode), with the compile and
CUDA-graph fast paths. Each builder takes a built model and returns a ready Step.

Decode cache design: a static KV cache preallocated for ctx = P + M positions (prompt +
new tokens), filled with the prompt's keys and values in prepare. One Step call generates
one token for the whole batch at position `pos`: it writes that position's key and value,
attends over the *whole* cache with a mask that hides positions after `pos`, takes the
greedy next token, and advances pos; after position P+M-1 it wraps back to P (the prompt
stays, the generated tail is overwritten). So the cache never grows, every call does the
same work (attention over ctx keys, masked or not — the shape a CUDA graph needs), and the
FLOPs and bytes booked per call are those of a full-length cache.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..profilers.memory import graph_pool_bytes
from .base import Step

# AdamW hyper-parameters (nanoGPT's); their values do not change the cost of a step.
LEARNING_RATE = 6e-4
WEIGHT_DECAY = 0.1
# Calls run after compiling, before the Step is handed to the timer (autotuning, lazy init).
COMPILE_WARM_CALLS = 2
# Side-stream warm-up calls before capturing a CUDA graph (as the CUDA-graphs docs do).
GRAPH_WARM_CALLS = 3


def make_optimizer(model: torch.nn.Module, device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    """AdamW, fused where torch has a fused kernel for the device (CUDA; CPU since 2.4),
    else the multi-tensor foreach path; returns it and which path it is."""
    params = list(model.parameters())
    try:
        opt = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, fused=True)
        return opt, "adamw fused"
    except (RuntimeError, ValueError):
        opt = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, foreach=True)
        return opt, "adamw foreach"


class CompileCounter:
    """A torch.compile backend that counts how many graphs Dynamo hands to Inductor.

    A count that rises after warm-up means the timed loop recompiled (a guard failed).

    Args:
        backend: the registered backend that really compiles ('inductor'; 'eager' in tests).
    """

    def __init__(self, backend: str = "inductor"):
        self.backend = backend
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        from torch._dynamo.backends.registry import lookup_backend

        self.graphs += 1
        return lookup_backend(self.backend)(gm, example_inputs)


def compile_model(model: torch.nn.Module, info: dict) -> tuple[Any, CompileCounter]:
    # Each compiled case starts from a clean Dynamo cache: otherwise earlier models' graphs
    # count against the recompile limit and a later case silently falls back to eager.
    torch._dynamo.reset()
    counter = CompileCounter()
    info["compile"] = "torch.compile(backend=inductor via a graph-counting wrapper)"
    return torch.compile(model, backend=counter), counter


def warm_compiled(fn, inputs: tuple, counter: CompileCounter, info: dict):
    """Compile outside the timed loop: time the first call (compile + one run) and a few
    warm calls, then wrap fn so that a recompilation during timing is recorded in info."""
    t0 = time.perf_counter()
    fn(*inputs)
    info["compile_s"] = time.perf_counter() - t0
    for _ in range(COMPILE_WARM_CALLS):
        fn(*inputs)
    base = counter.graphs
    info["compiled_graphs"] = base
    info["recompiles_in_timed_loop"] = 0

    def checked(*args):
        fn(*args)
        if counter.graphs != base:
            info["recompiles_in_timed_loop"] = counter.graphs - base

    return checked


def train_step(model, info: dict, *, device, dtype, compile: bool, x, y, flops: float, tokens: int) -> Step:
    """Forward, cross-entropy, backward, AdamW step, grads freed (set_to_none).

    Weights stay fp32; a bf16/fp16 dtype means autocast (mixed precision), with a grad
    scaler for fp16.
    """
    amp = dtype != torch.float32
    opt, info["optimizer"] = make_optimizer(model, device)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    info["autocast"] = str(dtype).removeprefix("torch.") if amp else None
    fwd, counter = compile_model(model, info) if compile else (model, None)

    def fn(x, y):
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = fwd(x, y)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad(set_to_none=True)

    if compile:
        fn = warm_compiled(fn, (x, y), counter, info)
    # working_set_bytes: prepare() sets it from the memory estimate (weights, grads, AdamW states, activations)
    return Step(fn=fn, inputs=(x, y), flops=flops, tokens=tokens, working_set_bytes=0, info=info)


def prefill_step(model, info: dict, *, compile: bool, x, flops: float, tokens: int) -> Step:
    """One no-grad forward over the prompt, logits at every position (as when scoring it)."""
    fwd, counter = compile_model(model, info) if compile else (model, None)

    def fn(x):
        with torch.no_grad():
            fwd(x)

    if compile:
        fn = warm_compiled(fn, (x,), counter, info)
    # working_set_bytes: prepare() sets it from the memory estimate (weights, activations, logits)
    return Step(fn=fn, inputs=(x,), flops=flops, tokens=tokens, working_set_bytes=0, info=info)


class Decoder:
    """Greedy generation from a static KV cache; each call makes one token per sequence.

    Args:
        model: a GPT in eval mode, weights in the inference dtype.
        prompt: (B, P) token ids; their keys and values fill the cache here.
        new_tokens: M, the positions after the prompt; pos cycles P, P+1, ..., P+M-1, P, ...
    """

    def __init__(self, model, prompt: torch.Tensor, new_tokens: int):
        B, P = prompt.shape
        self.model, self.P, self.M = model, P, new_tokens
        dtype = next(model.parameters()).dtype
        self.cache = model.new_cache(B, P + new_tokens, prompt.device, dtype)
        self.ctx = self.cache.ctx
        with torch.no_grad():
            logits = model(prompt, kv=self.cache)  # (B, P, V); prefill
        self.tok = logits[:, -1:, :].argmax(-1)  # (B, 1) static input buffer
        self.pos = torch.tensor([P], dtype=torch.long, device=prompt.device)  # static position
        self.arange = torch.arange(self.ctx, device=prompt.device)  # (ctx,)

    def logits(self) -> torch.Tensor:
        """Next-token logits (B, V) for self.tok at self.pos; writes that position's K/V."""
        mask = (self.arange <= self.pos).view(1, 1, 1, self.ctx)  # (1, 1, 1, ctx): True = attend
        return self.model.decode(self.tok, self.cache, self.pos, mask)

    def step(self) -> None:
        with torch.no_grad():
            self.tok.copy_(self.logits().argmax(-1, keepdim=True))
            self.pos.copy_((self.pos - self.P + 1) % self.M + self.P)  # wrap after P+M-1


def capture_graph(body, device: torch.device):
    """Capture `body` in a CUDA graph (static buffers are the body's own) and return replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(GRAPH_WARM_CALLS):
            body()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph


def decode_step(
    model, info: dict, *, device, prompt, new_tokens: int, cuda_graphs: bool, flops: float, floor_bytes: int
) -> Step:
    """One generated token for the whole batch per call (see the module doc for the cache)."""
    dec = Decoder(model, prompt, new_tokens)
    info.update(kv_cache="static", kv_cache_bytes=dec.cache.nbytes, ctx=dec.ctx, floor_bytes=floor_bytes)
    if cuda_graphs:
        graph = capture_graph(dec.step, device)
        fn = graph.replay
        # A replay allocates nothing: its temporaries live in the graph's private pool, held
        # from capture on, so the memory pass sees ~0 B; the pool is recorded here instead,
        # read from the pool's own segments (not a difference of reserved bytes: capture
        # empties the allocator's cache first; see graph_pool_bytes).
        info.update(cuda_graph=True, cuda_graph_pool_bytes=graph_pool_bytes(graph, device))
    else:
        fn = dec.step

    def teardown():
        dec.cache = None

    return Step(
        fn=fn, inputs=(), flops=flops, tokens=prompt.shape[0], working_set_bytes=floor_bytes,
        bytes_moved=float(floor_bytes), traffic="read", info=info, teardown=teardown,
    )
