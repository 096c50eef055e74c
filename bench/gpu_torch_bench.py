# PyTorch reference for bench/gpu-check.ts: GPT-2 124M (build-nanogpt's model, vocab 50304,
# T=1024) training tokens/s in fp32 with TF32 OFF (so it is the same arithmetic tapegrad
# does), fwd + bwd + clip + AdamW, median over several steps after warm-up; plus a 4096^3
# fp32 matmul. Needs only torch. Prints one JSON line on stdout.
#
#   python3 bench/gpu_torch_bench.py --batches 16,8 --steps 6 --warmup 2

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate='tanh'))


class GPT(nn.Module):
    def __init__(self, vocab=50304, block=1024, n_layer=12, n_head=12, n_embd=768):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx, targets):
        B, T = idx.size()
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def train_speed(B, T, steps, warmup):
    torch.manual_seed(0)
    model = GPT().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    x = torch.randint(0, 50257, (B, T), device='cuda')
    y = torch.randint(0, 50257, (B, T), device='cuda')
    times = []
    loss_v = None
    for s in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_v, _ = loss.item(), norm.item()  # the logged values, as tapegrad reads them
        torch.cuda.synchronize()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    del model, opt
    torch.cuda.empty_cache()
    med = statistics.median(times)
    return {'batch': B, 'step_ms': med * 1e3, 'tok_s': B * T / med, 'loss': loss_v}


def matmul_tflops(n=4096, iters=20):
    a = torch.randn(n, n, device='cuda')
    b = torch.randn(n, n, device='cuda')
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batches', default='16,8')
    ap.add_argument('--seq', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--warmup', type=int, default=2)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision('highest')
    out = {'torch': torch.__version__, 'device': torch.cuda.get_device_name(0), 'tf32': False,
           'matmul_tflops': matmul_tflops(), 'train': []}
    for B in [int(b) for b in a.batches.split(',') if b]:
        try:
            out['train'].append(train_speed(B, a.seq, a.steps, a.warmup))
        except torch.cuda.OutOfMemoryError as e:  # report and go on with the smaller batches
            out['train'].append({'batch': B, 'error': 'out of memory: ' + str(e)[:200]})
            torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
