"""Torch adapter: proxy models, seeded training, forward-hook extraction, retraining.

The only part of acgate that imports torch; it works on numpy arrays (images float32
``N x C x H x W`` in ``[0, 1]``, token ids int64 ``N x L``, labels int64 ``N``).

* :mod:`acgate.torch.models` — ``SmallCNN``, ``MLP``, ``TextCNN`` and ``build_proxy``.
* :mod:`acgate.torch.train` — ``seeded_model``, ``train_model``, ``fine_tune``, ``predict_proba``.
* :mod:`acgate.torch.extract` — last-hidden-layer activations via a forward hook.
* :mod:`acgate.torch.byo` — load a user's TorchScript or state_dict model safely.
* :mod:`acgate.torch.exre` — the retrain-and-predict callable for exclusionary reclassification.
* :mod:`acgate.torch.evaluate` — clean accuracy and attack success rate.
"""
