"""Train the embedded `toy` model: an epsilon-prediction DDPM on 16x16 digits.

Seeded and resumable. Writes OUT/unet (diffusers), OUT/conditioner and OUT/scheduler,
holding the EMA weights. Default settings take about 25 minutes on 2 idle CPU cores.
`--init DIR` continues from a saved toy (its EMA weights, a fresh optimizer and schedule);
OUT/training.json then keeps DIR's record under "previous".

    python scripts/train_toy.py --out compress/assets/toy
    python scripts/train_toy.py --init compress/assets/toy --out /tmp/toy-more --steps 6000 --lr 4e-4
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from tqdm import tqdm

from compress.data.digits import load_digits
from compress.models.class_conditioner import ClassConditioner
from compress.models.sd import SD_SCHEDULER_CONFIG
from compress.models.toy import NULL_CLASS, TOY_UNET_CONFIG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--cfg-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--init", type=Path, default=None, help="continue from this saved toy folder")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    data = load_digits("train")
    if args.init is None:
        unet = UNet2DConditionModel(**TOY_UNET_CONFIG)
        conditioner = ClassConditioner(dim=TOY_UNET_CONFIG["cross_attention_dim"])
        previous = None
    else:
        unet = UNet2DConditionModel.from_pretrained(args.init / "unet")
        conditioner = ClassConditioner.load(args.init / "conditioner")
        previous = json.loads((args.init / "training.json").read_text())
    scheduler = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    params = list(unet.parameters()) + list(conditioner.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    ema_unet, ema_cond = copy.deepcopy(unet).eval(), copy.deepcopy(conditioner).eval()
    generator = torch.Generator().manual_seed(args.seed)
    start, logged_seconds = 0, 0.0
    ckpt_path = args.out / "train_state.pt"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        unet.load_state_dict(state["unet"])
        conditioner.load_state_dict(state["conditioner"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_cond.load_state_dict(state["ema_conditioner"])
        optimizer.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        generator.set_state(state["generator"])
        start = state["step"]
        logged_seconds = _truncate_log(args.out / "train_log.jsonl", start)
        print(f"resumed at step {start}")

    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train_log.jsonl").open("a")
    t0 = time.time() - logged_seconds  # a resumed run's seconds continue the killed run's
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train toy")
    for step in bar:
        idx = torch.randint(0, len(data.labels), (args.batch_size,), generator=generator)
        x0, labels = data.images[idx], data.labels[idx].clone()
        drop = torch.rand(args.batch_size, generator=generator) < args.cfg_dropout
        labels[drop] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=generator)
        xt = scheduler.add_noise(x0, noise, t)
        pred = unet(xt, t, conditioner(labels)).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        lr_sched.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema_model, model in ((ema_unet, unet), (ema_cond, conditioner)):
                for pe, p in zip(ema_model.parameters(), model.parameters(), strict=True):
                    pe.lerp_(p, 1 - decay)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        log.write(json.dumps({"step": step + 1, "loss": loss.item(), "lr": lr_sched.get_last_lr()[0],
                              "seconds": round(time.time() - t0, 2)}) + "\n")
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            torch.save({"unet": unet.state_dict(), "conditioner": conditioner.state_dict(),
                        "ema_unet": ema_unet.state_dict(), "ema_conditioner": ema_cond.state_dict(),
                        "optimizer": optimizer.state_dict(), "lr_scheduler": lr_sched.state_dict(),
                        "generator": generator.get_state(), "step": step + 1}, ckpt_path)
            log.flush()

    ema_unet.save_pretrained(args.out / "unet")
    ema_cond.save(args.out / "conditioner")
    scheduler.save_pretrained(args.out / "scheduler")
    record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    record |= {"seconds": round(time.time() - t0, 1), "weights": "EMA of the UNet and the class conditioner"}
    if previous is not None:
        record["previous"] = previous
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    ckpt_path.unlink()
    print(f"saved {args.out} after {time.time() - t0:.0f} s")


def _truncate_log(path: Path, step: int) -> float:
    """Drop the log lines a killed run wrote past its last checkpoint; return the seconds logged up to it."""
    if not path.exists():
        return 0.0
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was killed
            continue
        if record["step"] <= step:
            kept.append(record)
    path.write_text("".join(json.dumps(record) + "\n" for record in kept))
    return kept[-1]["seconds"] if kept else 0.0


if __name__ == "__main__":
    main()
