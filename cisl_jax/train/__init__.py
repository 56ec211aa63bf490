"""Training stages: CVAE-GAN (gan), generation (generate), classifiers (classifier).

Submodules are imported by name (`from cisl_jax.train import gan`) so that importing
one stage does not pull in the others' dependencies.
"""
