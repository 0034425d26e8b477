"""Saccader where an object spans several glimpses: the paper's regime on
cluttered Fashion-MNIST.

On ImageNet a 77x77 glimpse of a 224x224 image sees a part of the object, not
the whole; on the whole-items data
(configs/fashion_mnist_whole_items_saccader.py) one 29x29 glimpse covers a
whole 28x28 item, so one good location is nearly as
good as all of them. Here the item is upscaled and the receptive field made
smaller, to the paper's proportions:

  - canvas 64 px; the BagNet's receptive field 21 px, stride 4 (an 11x11
    grid): canvas / receptive field = 3.05 (ImageNet: 224 / 77 = 2.91);
  - each 28x28 item upscaled (bilinear) to 44x44 at a random position wholly
    on the canvas: item / receptive field = 2.10;
  - a 21x21 glimpse covers at most 441 of the item's 1,936 pixels, so
    covering an item takes at least ceil(1936 / 441) = 5 glimpses;
  - clutter as on the default, at the items' scale: 6 fragments, each a
    third of an item's side (14 px of a 44 px item; 9 px of a 28 px item).

tests/test_parts_regime.py checks these numbers on the model and the built
data. The model is the default's with the last group's 3x3 convolution
replaced by a 1x1 (`kernel3` (2, 2, 0)); the rest of the config, DRAM and
both classifiers included, is the default's, scaled to the new receptive
field where it depends on it, except stages 2 and 3, set on the dev split
(below).

    python -m saccader_jax.main --config=configs/fashion_mnist_parts_saccader.py \
        --workdir=/tmp/saccader_parts
    python -m experiments.paper_figures \
        --config=configs/fashion_mnist_parts_saccader.py \
        --workdir=/tmp/paper_figures_parts --seeds=0,1,2 --with_stage2 \
        --occlusion_fill=background
"""

import ml_collections

from configs import fashion_mnist_whole_items_saccader

CANVAS_SIZE = 64
ITEM_SIZE = 44
RECEPTIVE_FIELD = 21


def get_config() -> ml_collections.ConfigDict:
  config = fashion_mnist_whole_items_saccader.get_config()
  config.dataset.image_size = CANVAS_SIZE
  config.dataset.item_size = ITEM_SIZE
  config.dataset.clutter_size = 14
  # Normalisation of these canvases (train split, measured once).
  config.dataset.mean = (0.214,)
  config.dataset.std = (0.327,)
  config.model.representation.kernel3 = (2, 2, 0)
  config.dram.glimpse_size = RECEPTIVE_FIELD
  # Stages 2 and 3 as chosen on the dev split (experiments/README.md, "The
  # parts regime"; seed 0, 2026-12-02). Location pretraining targets the
  # predicted class's top locations (the original code's reading): the
  # paper's reading, each location's maximum logit over all classes, points
  # at clutter that one class claims strongly (dev top-1 at one glimpse
  # after stage 2: 59.5 % against 40.3 %).
  config.stages.location.reading = "code"
  # Stage 3 trains the policy alone, its location network at 100x the base
  # rate: at 1x the REINFORCE gradient barely moves it (relative change
  # 1e-3 over the stage) and stage 3's gains come from retraining the
  # BagNet on sampled glimpses; so configured, dev top-1 rises over stage 2
  # by 6.4 / 6.8 / 6.0 points at 1 / 6 / 12 glimpses, all of it the
  # policy's.
  config.stages.policy.train_representation = False
  config.stages.policy.location_learning_rate_factor = 100.0
  return config
