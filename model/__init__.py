"""Kinema's generation library: diffusers video pipelines behind `generate(request, on_step, should_stop)`.

Importing this package (and `model.config`, `model.registry`) never imports torch, so the API
gateway can validate requests against a model's capabilities without carrying the worker's weight.
"""
