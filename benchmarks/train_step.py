"""e4e training steps/s: the e4e_demo model and the e4e_ffhq model (1024 px generator, 256 px input,
discriminator and progressive deltas on) with a small batch. Weights are random (same cost).

    python benchmarks/train_step.py [--steps 3] [--ffhq-batch 2] [--out results.json]

Each step is the full official step: discriminator (+R1 when due) and encoder, timed per batch
inside a real Lightning Trainer; the first step is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import device_name, print_table, write_json  # noqa: E402

NO_FILES = [
    "model.stylegan_weights=null",
    "model.encoder_init=null",
    "model.id_weights=null",
    "model.random_loss_networks=true",
    "~callbacks.official_export",
]


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.start)


def bench(name: str, overrides: list[str], batch: int, steps: int) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *NO_FILES])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = instantiate(cfg.model)
    size = cfg.model.encoder.input_size
    images = torch.rand(batch * (steps + 1), 3, size, size) * 2 - 1
    loader = DataLoader(
        TensorDataset(images), batch_size=batch, collate_fn=lambda items: {"image": torch.stack([i[0] for i in items])}
    )
    timer = StepTimer()
    trainer = pl.Trainer(
        max_steps=steps + 1,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    t = statistics.median(timer.times[1:])
    return dict(
        model=name,
        input_px=size,
        generator_px=cfg.generator.size,
        batch=batch,
        steps_s=1 / t,
        img_s=batch / t,
        s_per_step=t,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--demo-batch", type=int, default=4)
    parser.add_argument("--ffhq-batch", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = [
        bench("e4e_demo", ["experiment=e4e_demo", "model.progressive.start=0"], args.demo_batch, args.steps),
        bench(
            "e4e_ffhq",
            [
                "experiment=e4e_ffhq",
                "model.progressive.start=0",
                "data=synthetic",
                f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
            ],
            args.ffhq_batch,
            args.steps,
        ),
    ]
    base = rows[0]["img_s"]
    for r in rows:
        r["img_s_vs_demo"] = r["img_s"] / base
    print(f"device: {device_name(device)}, torch {torch.__version__}")
    print_table(rows, ["model", "input_px", "generator_px", "batch", "steps_s", "img_s", "s_per_step", "img_s_vs_demo"])
    write_json("train_step", {"device": device_name(device), "torch": torch.__version__, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
