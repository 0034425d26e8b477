"""Ships a finished job's models with the package (`saccader_jax.pretrained`).

    python -m experiments.export_pretrained --workdir=/tmp/saccader_parts \
        --name=fashion_mnist_parts_quick [--subset=1000]

Writes saccader_jax/pretrained_workdirs/NAME/: the job's config.json and test
results, each stage's final model without its optimizer state, the first
--subset canvases of the test split (uint8, with labels) and what the job's
own final model scores on them (greedy policy and ordered logits at every
t, the BagNet on all locations; with the CPU that computed it), which
tests/test_pretrained.py compares the shipped model with.
"""

from __future__ import annotations

import datetime
import json
import pathlib

from absl import app
from absl import flags
from etils import epath
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A finished job's --workdir.")
flags.DEFINE_string("name", None, "The shipped model's name.")
flags.DEFINE_integer("subset", 1000, "Test canvases shipped and scored.")
flags.DEFINE_bool("overwrite", False, "Replace a shipped model of that name.")

RESULT_FILES = ("test_accuracy.json", "test_accuracy.md", "test_accuracy.png",
                "test_accuracy_glimpses.png")


def main(argv) -> None:
  del argv
  from experiments import timing  # pylint: disable=g-import-not-at-top
  from saccader_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from saccader_jax import pretrained  # pylint: disable=g-import-not-at-top
  from saccader_jax import run_record  # pylint: disable=g-import-not-at-top
  from saccader_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  source = epath.Path(FLAGS.workdir)
  target = pretrained.ROOT / FLAGS.name
  if target.exists():
    if not FLAGS.overwrite:
      raise app.UsageError(f"{target} exists; pass --overwrite to replace it.")
    target.rmtree()
  config = run_record.load_config(source)
  missing = [name for name in RESULT_FILES[:2] if not (source / name).exists()]
  if missing:
    raise app.UsageError(f"{source} has no {', '.join(missing)}: the job has "
                         "not finished its test evaluation.")
  target.mkdir(parents=True)
  for name in (run_record.CONFIG_FILE,) + RESULT_FILES:
    if (source / name).exists():
      (source / name).copy(target / name)
  checkpoints.export_models(source, target, tuple(config.run_stages))

  builder = input_pipeline.get_builder(config.dataset)
  batch = next(input_pipeline.eval_batches(
      config.dataset, builder, config.dataset.test_split, FLAGS.subset,
      FLAGS.subset, pixels=True))
  real = np.asarray(batch["mask"]) > 0
  images, labels = batch["image"][real], batch["label"][real]
  with (target / pretrained.SUBSET_FILE).open("wb") as f:
    np.savez_compressed(f, images=images, labels=labels)
  # The job's own final model, not the exported copy: the test then checks
  # the copy against its source.
  record = pretrained.score(config, run_record.load_variables(source, config),
                            images, labels)
  record.update(cpu=timing.machine(),
                date=datetime.date.today().isoformat(),
                split=f"{config.dataset.test_split}[:{len(labels)}]")
  (target / pretrained.SUBSET_ACCURACY_FILE).write_text(
      json.dumps(record, indent=1) + "\n")
  size = sum(p.stat().st_size for p in pathlib.Path(target).rglob("*")
             if p.is_file())
  print(f"Shipped {target} ({size / 2**20:.1f} MiB): top-1 on "
        f"{record['split']}, t = 1 / 6 / 12: " + "; ".join(
            f"{name} " + " / ".join(f"{100 * v['top1'][t]:.1f}"
                                    for t in (0, 5, 11))
            for name, v in record["policies"].items()) +
        f"; BagNet {100 * record['bagnet_top1']:.1f}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "name"])
  app.run(main)
