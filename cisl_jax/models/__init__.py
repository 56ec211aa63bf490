"""Flax NNX networks of the paper: the CVAE-GAN parts and the 4-conv + 2-FC classifier."""
from cisl_jax.models.classifier import Classifier
from cisl_jax.models.cvae_gan import CVAEGAN
from cisl_jax.models.cvae_gan import Critic
from cisl_jax.models.cvae_gan import Decoder
from cisl_jax.models.cvae_gan import Encoder

__all__ = ['Classifier', 'CVAEGAN', 'Critic', 'Decoder', 'Encoder']
