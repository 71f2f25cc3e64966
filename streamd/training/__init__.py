"""``streamd train``: adapt a detector to the user's own audio, with honest generalization figures.

Modules: ``augment`` (call-channel signal processing), ``channels`` (codecs via PyAV, room,
RawBoost: random call paths, ``call_channel``), ``data`` (windows cut as the daemon cuts
them, splits by group), ``features`` (frozen front ends, cached; trainable heads per family),
``trainer`` (the loop), ``logo`` (leave-one-generator-out), ``report`` (torch-free formatting that
``streamd eval`` also uses). Importing this package does not import torch.
"""
