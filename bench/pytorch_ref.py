#!/usr/bin/env python3
"""PyTorch reference trainer: the same model, recipe, thread count and
in-memory data as a trainerd preset, for side-by-side speed comparisons.

Usage: pytorch_ref.py --spec SPEC.json --data-dir DIR [--threads N] [--epochs N]
Prints one JSON object: samples_per_sec, train_seconds, wall_seconds,
test_accuracy, val_accuracy, peak_rss_mb.
"""
import argparse, gzip, json, math, os, resource, sys, time

T0 = time.time()
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, val_size, seed):
    p = lambda n: os.path.join(data_dir, n + ".gz")
    tx = torch.from_numpy(read_idx(p("train-images-idx3-ubyte")).copy()).float().div_(255).unsqueeze(1)
    ty = torch.from_numpy(read_idx(p("train-labels-idx1-ubyte")).astype(np.int64))
    sx = torch.from_numpy(read_idx(p("t10k-images-idx3-ubyte")).copy()).float().div_(255).unsqueeze(1)
    sy = torch.from_numpy(read_idx(p("t10k-labels-idx1-ubyte")).astype(np.int64))
    mean, std = tx.mean().item(), tx.std().item()
    tx, sx = (tx - mean) / std, (sx - mean) / std
    perm = torch.randperm(len(ty), generator=torch.Generator().manual_seed(seed))
    v, t = perm[:val_size], perm[val_size:]
    return (tx[t], ty[t]), (tx[v], ty[v]), (sx, sy)


def build(arch):
    layers, c, h, w = [], 1, 28, 28
    if arch["kind"] == "mlp":
        layers.append(nn.Flatten())
        width = c * h * w
        for hd in arch["hidden"]:
            layers += [nn.Linear(width, hd), nn.ReLU()]
            if arch.get("dropout", 0) > 0:
                layers.append(nn.Dropout(arch["dropout"]))
            width = hd
        layers.append(nn.Linear(width, 10))
        return nn.Sequential(*layers)
    for b in arch["blocks"]:
        k = b.get("kernel", 3)
        pad = b["padding"] if b.get("padding") is not None else k // 2
        convs = b.get("convs", 1)
        for i in range(convs):
            bn = b.get("batch_norm", False)
            pool_here = b.get("pool") and i == convs - 1
            layers.append(nn.Conv2d(c, b["channels"], k, padding=pad, bias=not bn))
            if pool_here and b.get("pool_first"):
                layers.append(nn.MaxPool2d(2))
            if bn:
                layers.append(nn.BatchNorm2d(b["channels"]))
            layers.append(nn.ReLU())
            if pool_here and not b.get("pool_first"):
                layers.append(nn.MaxPool2d(2))
            c, h, w = b["channels"], h + 2 * pad - k + 1, w + 2 * pad - k + 1
        if b.get("pool"):
            h, w = h // 2, w // 2
        if b.get("dropout", 0) > 0:
            layers.append(nn.Dropout(b["dropout"]))
    layers.append(nn.Flatten())
    width = c * h * w
    for hd in arch.get("head", []):
        layers += [nn.Linear(width, hd), nn.ReLU()]
        if arch.get("head_dropout", 0) > 0:
            layers.append(nn.Dropout(arch["head_dropout"]))
        width = hd
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def optimizer(spec, params):
    k = spec["kind"]
    if k == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=spec["momentum"],
                               nesterov=spec["nesterov"], weight_decay=spec["weight_decay"])
    if k == "adam_w":
        return torch.optim.AdamW(params, lr=spec["lr"], betas=(spec["beta1"], spec["beta2"]),
                                 eps=spec["eps"], weight_decay=spec["weight_decay"])
    return torch.optim.Adadelta(params, lr=spec["lr"], rho=spec["rho"], eps=spec["eps"],
                                weight_decay=spec["weight_decay"])


def lr_factor(sched, step, total, per_epoch):
    """The same schedules as trainerd's optim/schedule.rs, as a multiple of the base lr."""
    k = sched["kind"]
    if k == "constant":
        return 1.0
    if k == "step":
        return sched["gamma"] ** ((step // per_epoch) // sched["every_epochs"])
    cos = lambda a, b, f: b + (a - b) * (1 + math.cos(math.pi * f)) / 2
    init = 1.0 / sched["div_factor"]
    floor = init / sched["final_div_factor"]
    warm = max(total * sched["pct_start"], 1.0)
    if step < warm:
        return cos(init, 1.0, step / warm)
    return cos(1.0, floor, min((step - warm) / max(total - warm, 1.0), 1.0))


def shift(x, s):
    if s <= 0:
        return x
    n = x.shape[0]
    bg = x.amin()
    pad = F.pad(x - bg, (s, s, s, s)) + bg
    dev = x.device
    dx = torch.randint(0, 2 * s + 1, (n,), device=dev)
    dy = torch.randint(0, 2 * s + 1, (n,), device=dev)
    rows = (dy[:, None] + torch.arange(28, device=dev)[None, :])  # n x 28
    cols = (dx[:, None] + torch.arange(28, device=dev)[None, :])
    idx = torch.arange(n, device=dev)[:, None, None]
    return pad[:, 0][idx, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def evaluate(model, x, y, fmt=torch.channels_last):
    model.eval()
    correct = 0
    for i in range(0, len(y), 512):  # trainerd's CPU batch: cache-sized
        xb = x[i:i + 512].contiguous(memory_format=fmt)
        correct += (model(xb).argmax(1) == y[i:i + 512]).sum().item()
    model.train()
    return correct / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-steps", type=int, help="stop after this many steps (throughput runs)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (data then lives on the GPU)")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                    help="keep NCHW memory (default: channels-last, as trainerd)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    spec = json.load(open(a.spec))
    recipe = spec["recipe"]
    epochs = a.epochs or recipe["epochs"]
    (tx, ty), (vx, vy), (sx, sy) = [
        (x.to(a.device), y.to(a.device)) for x, y in load(a.data_dir, 5000, a.seed)]
    model = build(spec["arch"]).to(a.device)
    # The layout trainerd uses, and the one PyTorch's performance guide
    # recommends for CNNs on the CPU: the strongest baseline, not a straw man.
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = optimizer(recipe["optimizer"], model.parameters())
    base = recipe["optimizer"]["lr"]
    bs = recipe["batch_size"]
    n = len(ty)
    per_epoch = math.ceil(n / bs)
    total = per_epoch * epochs
    smoothing = recipe.get("label_smoothing", 0.0)
    aug = recipe.get("augment_shift", 0)
    step, samples, eval_seconds, evals = 0, 0, 0.0, 0
    t_train = time.time()
    done = False
    for epoch in range(epochs):
        perm = torch.randperm(n, device=a.device)
        for i in range(per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            x, y = tx[idx], ty[idx]
            x = shift(x, aug).contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for g in opt.param_groups:
                g["lr"] = base * lr_factor(recipe["schedule"], step, total, per_epoch)
            opt.step()
            step += 1
            samples += len(idx)
            if a.max_steps and step >= a.max_steps:
                done = True
                break
        # Validation at each epoch end, inside the timed region, as trainerd
        # does (its study decides on it): both sides do the same work.
        t_eval = time.time()
        val_accuracy = evaluate(model, vx, vy, fmt)
        eval_seconds += time.time() - t_eval
        evals += 1
        if done:
            break
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    train_seconds = time.time() - t_train
    out = {
        "samples_per_sec": samples / train_seconds,
        "train_seconds": train_seconds,
        "steps": step,
        "val_accuracy": val_accuracy,
        "eval_seconds_per_epoch": eval_seconds / max(evals, 1),
        "test_accuracy": evaluate(model, sx, sy, fmt),
        "wall_seconds": time.time() - T0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
