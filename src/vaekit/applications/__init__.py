"""What people use a trained VAE for, on any loaded run: anomaly scores, denoising and completion,
walks through the latent space. Each use is one module; the CLI and the estimator call them."""
