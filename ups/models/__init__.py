"""UPS models: encoder, latent operator, Fourier decoder, diffusion residual (see ups_model.build_model)."""
