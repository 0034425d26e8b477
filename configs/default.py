"""Training settings shared by every dataset config.

Dataset configs (e.g. configs/imagenet_saccader.py) start from this one and
override what differs. Stage lengths are epochs unless num_steps is set.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 256        # global, over all devices of all hosts
  config.eval_batch_size = 256
  # Evaluation and policy calls run a batch in chunks of this many images
  # (saccader_jax/chunking.py): "auto" = on CPU about 400k pixels per chunk
  # (8 images at 224x224), elsewhere the whole batch; 0 = the whole batch.
  config.eval_chunk_size = "auto"
  # XLA's YNNPACK CPU fusions (saccader_jax/cpu_kernels.py): "auto" picks by the
  # CPU's features; "" = XLA's default kernels. No effect on GPU or TPU.
  config.cpu_ynn_fusions = "auto"

  # The optimizer, by name (saccader_jax/optimizers.py): sgd_nesterov,
  # momentum, sgd, adam, adamw, lamb, lars, which read the keys below; or any
  # optax factory ("lion", "adafactor", "optax.contrib.prodigy"), whose
  # arguments other than learning_rate go in kwargs (in a config file:
  # config.optimizer.kwargs = {"b1": 0.95}).
  config.optimizer = ml_collections.ConfigDict({
      "name": "sgd_nesterov", "momentum": 0.9, "weight_decay": 0.0,
      "b1": 0.9, "b2": 0.999, "eps": 1e-8, "trust_coefficient": 0.001,
      "grad_clip_norm": 0.0, "kwargs": {}})
  # The schedule, by name: warmup_cosine, step, constant. Fractions are of
  # each stage's length.
  config.schedule = ml_collections.ConfigDict({
      "name": "warmup_cosine", "warmup_fraction": 0.05, "end_factor": 0.0,
      "decay_fractions": (0.5, 0.75), "decay_factor": 0.1})

  # The three stages of section 3.2, run in this order.
  config.run_stages = ("representation", "location", "policy")
  l2 = {"l2_weight": 8e-5,
        # normalized (the original code): weight * mean(k^2);
        # plain (the paper's equations): weight / 2 * sum(k^2);
        # none: use optimizer.weight_decay instead.
        "l2_mode": "normalized"}
  config.stages = ml_collections.ConfigDict({
      "representation": dict(l2, num_epochs=120.0, num_steps=0,
                             learning_rate=0.1),
      "location": dict(l2, num_epochs=120.0, num_steps=0, learning_rate=0.1,
                       num_glimpses=12,
                       # paper: targets by max logit, teacher forcing;
                       # code: the original implementation's variant.
                       reading="paper",
                       # The targets' ranking: "reading" (the reading's
                       # own), or "predicted_probability_beyond_paper" (the
                       # predicted class's softmax probability at each
                       # location; in neither the paper nor the code).
                       target_ranking="reading",
                       # The frozen representation's batch norm: "inference"
                       # (moving averages) or "batch" (the batch's
                       # statistics, as the original code's stage 2).
                       frozen_representation_bn="inference"),
      # The full-image classifier of the occlusion analysis (config.classifier).
      "classifier": dict(l2, num_epochs=90.0, num_steps=0, learning_rate=0.1),
      "policy": dict(l2, num_epochs=120.0, num_steps=0, learning_rate=0.01,
                     num_glimpses=6, num_trajectories=2,
                     plus_minus_one_rewards=False, location_l2_weight=8e-5,
                     reinforce_weight=1.0,
                     # The location network's learning rate, as a factor on
                     # learning_rate (the BagNet's).
                     location_learning_rate_factor=1.0,
                     # False: the BagNet stays as stages 1-2 left it and
                     # REINFORCE trains the location network alone.
                     train_representation=True,
                     # mean (the original code) or sum (eq. 6 as printed) of
                     # the S * T log-probabilities.
                     reinforce_reduction="mean"),
      # DRAM (config.dram), the recurrent baseline: cross entropy of the
      # step-T logits + reinforce_weight x REINFORCE (saccader_jax/objectives/
      # dram.py), L2 on the glimpse network, LSTM0 and the classifier.
      "dram": dict(l2, num_epochs=120.0, num_steps=0, learning_rate=0.1,
                   num_glimpses=6, reinforce_weight=0.1,
                   plus_minus_one_rewards=False,
                   # "last": CE of step T's logits; "all": of every step's.
                   cross_entropy_steps="last",
                   # "last": step T's correctness rewards every location;
                   # "each": l_t is rewarded by step t's prediction.
                   reward_steps="last",
                   # mean (the original code) or sum over the T steps.
                   reinforce_reduction="mean"),
      # The Saccader + high-resolution classifier (config.classnet): the
      # classifier fine-tuned on the glimpse-averaged logits of the frozen
      # Saccader's num_glimpses crops.
      "classnet": dict(l2, num_epochs=10.0, num_steps=0, learning_rate=0.01,
                       num_glimpses=6),
  })

  # A step whose loss or gradient norm is not finite: "stop" the stage with
  # an error (no checkpoint of non-finite state is written), or "skip" it
  # (parameters unchanged; counted as train/nonfinite_steps).
  config.on_nonfinite = "stop"

  config.eval_glimpses = 12
  # Evaluators of the policy (saccader_jax/evaluators), run on the dev split
  # after each stage and on the test split at the end. "occlusion" needs
  # the full-image classifier: config.classifier and its stage in run_stages.
  config.evals = ml_collections.ConfigDict({
      "accuracy": {},
      "coverage": {},
      "glimpses": {"num_images": 8},
  })
  # Baseline policies (saccader_jax/policies: ordered_logits, random, ...)
  # scored on the test split beside the learned policy, over the BagNet of
  # stage "representation"; the table adds the learned policy minus the
  # first of them.
  config.test_baselines = ()
  config.log_every_steps = 100
  config.eval_every_steps = 0        # 0: only at the end of each stage
  config.eval_at_stage_end = True    # evaluate on dev when a stage ends
  config.eval_max_examples = 0       # dev examples per periodic eval; 0: all
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.async_checkpoints = True   # write checkpoints in the background
  config.profile_steps = 0           # >0: profile that many steps, once
  # Global batches staged on the devices ahead of the step
  # (saccader_jax/device_prefetch.py).
  config.device_prefetch = 2
  # Compiled steps kept across restarts (saccader_jax/compilation_cache.py):
  # "" = <workdir>/compilation_cache, a path or gs:// URL, or "none".
  config.compilation_cache_dir = ""
  # A stage that runs the BagNet frozen in inference mode reads its outputs
  # from host memory, computed once per training example
  # (saccader_jax/representation_cache.py): data sets without training
  # augmentation only; memory per example h * w * (features + what +
  # classes) float32.
  config.cache_frozen_representation = False
  return config
