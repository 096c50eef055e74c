# PyTorch fp32 reference numbers for bench/run.ts, same configs as the TypeScript side:
#   python3 bench/torch_bench.py matmul '{"threads":2,"shapes":[[1024,1024,1024,false]]}'
#   python3 bench/torch_bench.py step '{"model":"gpt","nLayer":4,"nHead":4,"nEmbd":128,"T":128,"B":8,"vocab":50304,"threads":2,"steps":3}'
#   ... with "warmup": W, "budgetS": S instead of "steps": steady state (W warm-up steps, then steps
#   for S seconds, the median); run it with OMP_WAIT_POLICY=PASSIVE, as bench/run.ts does.
# Prints one JSON line. The GPT is nanoGPT's (GELU tanh, weight tying, causal attention written
# out, since torch < 2.0 lacks F.scaled_dot_product_attention), trained with AdamW + clipping.
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, nh, T):
        super().__init__()
        self.nh = nh
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)
        self.register_buffer('mask', torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float('-inf'))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate='tanh'))


class GPT(nn.Module):
    def __init__(self, L, nh, c, T, V):
        super().__init__()
        self.wte = nn.Embedding(V, c)
        self.wpe = nn.Embedding(T, c)
        self.h = nn.ModuleList([Block(c, nh, T) for _ in range(L)])
        self.ln_f = nn.LayerNorm(c)
        self.lm_head = nn.Linear(c, V, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():  # GPT-2 init, as src/nn/gpt.ts
            if name.endswith('bias'):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02 * ((2 * L) ** -0.5 if name.endswith('proj.weight') else 1.0))

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def step_bench(cfg):
    torch.manual_seed(0)
    if cfg['model'] == 'mlp':
        B = 256
        model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
        x, y = torch.randn(B, 784), torch.arange(B) % 10
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = lambda: F.cross_entropy(model(x), y)
        tokens = 0
    else:
        L, nh, c, T, B, V = (cfg[k] for k in ('nLayer', 'nHead', 'nEmbd', 'T', 'B', 'vocab'))
        model = GPT(L, nh, c, T, V)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                                lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
        idx = (torch.arange(B * T) * 7919 % V).view(B, T)
        tgt = ((torch.arange(B * T) * 104729 + 1) % V).view(B, T)
        loss_fn = lambda: model(idx, tgt)
        tokens = B * T

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        if cfg['model'] == 'gpt':
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(cfg.get('warmup', 2)):  # warm-up, as the TypeScript side
        step()
    if 'budgetS' in cfg:
        # steady state: steps until the time budget is spent (at least 3), the median step
        times, spent = [], 0.0
        while len(times) < 3 or spent < cfg['budgetS']:
            t0 = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t0)
            spent += times[-1]
        times.sort()
        n = len(times)
        ms = 1000 * (times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2)
    else:
        t0 = time.perf_counter()
        for _ in range(cfg['steps']):
            loss = step()
        ms = (time.perf_counter() - t0) * 1000 / cfg['steps']
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {'ok': True, 'msPerStep': ms, 'loss': loss, 'tokensPerSec': tokens * 1000 / ms if tokens else None,
            'peakRssMB': ru.ru_maxrss / 1024, 'cpuS': ru.ru_utime + ru.ru_stime}


def matmul_bench(cfg):
    out = []
    for m, k, n, trans_b in cfg['shapes']:
        a = torch.randn(m, k)
        b = torch.randn(n, k) if trans_b else torch.randn(k, n)
        f = (lambda: a @ b.t()) if trans_b else (lambda: a @ b)
        f()
        best, reps, t_all = float('inf'), 0, time.perf_counter()
        while reps < 3 or (time.perf_counter() - t_all < 1.0 and reps < 20):
            t0 = time.perf_counter(); f(); best = min(best, time.perf_counter() - t0); reps += 1
        out.append({'m': m, 'k': k, 'n': n, 'transB': trans_b, 'gflops': 2 * m * n * k / best / 1e9})
    return {'ok': True, 'results': out}


if __name__ == '__main__':
    what, cfg = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(cfg.get('threads', 2))
    try:
        print(json.dumps(matmul_bench(cfg) if what == 'matmul' else step_bench(cfg)))
    except Exception as e:  # report, do not crash the TypeScript runner
        print(json.dumps({'ok': False, 'note': str(e)[:300]}))
