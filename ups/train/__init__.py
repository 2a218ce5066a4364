"""Staged UPS training: autoencoder → latent cache → operator → diffusion residual → consistency distillation."""
